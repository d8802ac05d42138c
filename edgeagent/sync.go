package edgeagent

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"time"

	"outpost/edgeagent/link"
	"outpost/kube"
	"outpost/protocol"
	"outpost/scheduler"
	"outpost/snapshot"
)

// Collector reads a snapshot of the device.
type Collector interface {
	Collect(ctx context.Context) (*snapshot.Snapshot, error)
}

// syncer runs the async loop: one exchange per tick of its plan.
type syncer struct {
	cfg  Config
	log  *slog.Logger
	cl   *link.Client
	col  Collector
	id   *identity
	st   *state
	plan *scheduler.Plan
	now  func() time.Time
	// resync is the nonce a restored server asked this device to echo.
	resync []byte
	// cmds is the command journal and ack outbox; exec runs the commands.
	cmds *journal
	exec Executor
	// platform is what the device runs: kube.PlatformKubernetes, or empty
	// for Docker.
	platform string
	// access keeps the users' service accounts of an agent on Kubernetes;
	// nil on Docker.
	access *kube.Access
	// work runs edge stacks and jobs and holds their reports; nil in
	// tests that do not need it.
	work *work
	// waiting is set while the server holds the device in its waiting room.
	waiting bool
	// standard: poll at the poll interval instead of syncing; the server
	// may ask for the tunnel, which openTunnel keeps up (tunnel.go).
	standard bool
	tun      *tunnelKeeper
	// newTunnel makes the tunnel keeper (and the agent API behind it) when
	// the device becomes standard; nil in tests without a tunnel.
	newTunnel func() (*tunnelKeeper, error)
	// wait blocks until the clock reads until, or ctx ends (false); nil
	// waits on a real timer. Tests run a day of exchanges with a fake one.
	wait func(ctx context.Context, until time.Time) bool
}

// maxRetryAfter bounds how long a slow_down answer can keep the agent quiet.
const maxRetryAfter = scheduler.MaxRetryAfter

// newPlan is the schedule an agent starts with, in either mode, until the
// server's first answer brings its frequencies.
func newPlan(now time.Time, rnd *rand.Rand) *scheduler.Plan {
	return scheduler.NewPlan(scheduler.Defaults, now, rnd)
}

// slowCollect is how long a collection may take before the agent logs it.
const slowCollect = 10 * time.Second

// pendingSnapshot is a push awaiting the server's ack.
type pendingSnapshot struct {
	seq  uint64
	data []byte // CBOR of the full snapshot at seq
}

// run ticks until ctx ends.
func (s *syncer) run(ctx context.Context) error {
	at, inc := s.plan.Next()
	s.log.Info("first exchange scheduled", "in", time.Until(at).Round(time.Millisecond), "carries", inc)
	wait := s.wait
	if wait == nil {
		wait = scheduler.Wait
	}
	for {
		at, inc := s.plan.Next()
		s.cl.Idle(at.Sub(s.now())) // closes the connection now if the next exchange is far
		if !wait(ctx, at) {
			return nil
		}
		err := s.exchange(ctx, inc)
		now := s.now()
		var pe *protocol.Error
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &pe) && pe.Code == protocol.CodeUnsupportedVersion:
			s.log.Error("server does not speak this agent's protocol version; upgrade the agent", "server_says", pe.Message)
			s.plan.Failed(now)
		case errors.As(err, &pe) && pe.Code == protocol.CodeSlowDown && pe.RetryAfter > 0:
			d := min(time.Duration(pe.RetryAfter)*time.Second, maxRetryAfter)
			s.log.Warn("the server asked this device to slow down", "retry_in", d, "server_says", pe.Message)
			s.plan.Pause(now, d)
		case errors.As(err, &pe) && pe.Code == protocol.CodeLimit && inc&protocol.IncludeSnapshot != 0:
			// The server will not keep a snapshot this large: the slot
			// counts as served, so the device goes on pinging and pulling
			// commands now, and tries again at its next snapshot slot.
			s.log.Error("the server refused this device's snapshot as too large; going on without it until the next snapshot slot", "server_says", pe.Message)
			s.plan.Done(protocol.IncludeSnapshot, now)
			if rest := inc &^ protocol.IncludeSnapshot; rest != 0 {
				if err := s.exchange(ctx, rest); err != nil && ctx.Err() == nil {
					s.log.Warn("sync failed; retrying with backoff", "err", err)
					s.plan.Failed(s.now())
				}
			}
		case errors.As(err, &pe) && pe.Code == protocol.CodeRejected:
			s.log.Error("an operator rejected this device; it will keep being refused with this identity key", "edge_id", s.id.EdgeID)
			s.plan.Failed(now)
		default:
			s.log.Warn("sync failed; retrying with backoff", "err", err)
			s.plan.Failed(now)
		}
	}
}

// exchange makes one sync request carrying inc and applies the answer.
func (s *syncer) exchange(ctx context.Context, inc protocol.Include) error {
	// The plan learns that everything it asked for was served, including
	// what is left out below: a left-out kind must not stay due.
	due := inc
	asked := inc
	if s.waiting || s.id.Env == 0 {
		// A device in the waiting room, or calling with the onboarding key
		// for the first time, gets nothing but its trust state: no
		// snapshot leaves it until an operator trusts it.
		inc &^= protocol.IncludeSnapshot
	}
	req := protocol.SyncRequest{Version: protocol.Version, EnvID: s.id.Env, Include: inc, Resync: s.resync}
	if s.id.MAC == nil {
		req.EdgeID = s.id.EdgeID
		req.Agent = s.agentInfo()
	}
	var pending *pendingSnapshot
	if inc&protocol.IncludeSnapshot != 0 {
		push, p, err := s.prepareSnapshot(ctx)
		if err != nil {
			// Still check in; the snapshot waits for the next tick.
			s.log.Warn("snapshot failed", "err", err)
			req.Include &^= protocol.IncludeSnapshot
		} else if push == nil {
			req.Include &^= protocol.IncludeSnapshot // nothing changed
		} else {
			req.Snapshot, pending = push, p
		}
	}
	// Acks go with every request, due commands or not, until one that
	// carried them is answered.
	req.Acks = s.cmds.pending()
	if s.work != nil {
		req.StackStatuses, req.JobResults = s.work.reports()
	}
	if err := s.id.Seal(&req, reserveIn(s.st, func() error { return s.st.save(s.cfg.DataDir) })); err != nil {
		return err
	}
	var ans protocol.SyncAnswer
	path := "/edge/v1/sync"
	if s.standard {
		path = "/edge/v1/poll"
	}
	raw, err := s.cl.Post(ctx, path, &req, &ans, func(body []byte) string { return s.id.BodyProof(req.EnvID, body) })
	if err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) && pe.Code == protocol.CodeIdentity {
			// The server restarted from a counter floor above our next
			// counter, or no longer knows our key agreement (its data was
			// restored, or its key changed): skip a block of counters and
			// go back to a signed contact.
			s.id.Refused()
			s.st.ServerDH = nil
		}
		return fmt.Errorf("sync: %w", err)
	}
	// Nothing in an answer is acted on before its tag verifies: not the
	// environment it names, not its commands, not even its acks.
	key, env, err := s.id.VerifyAnswer(raw, &ans, req.Proof.Counter)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if ans.Resync != nil {
		// The server's store is a restored backup and served nothing of
		// this request: ask again at once, echoing its nonce. Acks,
		// statuses and the snapshot go again with it.
		if bytes.Equal(ans.Resync, req.Resync) {
			return errors.New("sync: the server asks again for the nonce this request echoed")
		}
		s.resync = ans.Resync
		if req.Resync != nil {
			// This request echoed a nonce and was given another: retry
			// with the backoff, not at once, so a server that keeps
			// changing its nonce cannot keep the device calling.
			return errors.New("sync: the server answered the echoed nonce with a new one; trying again later")
		}
		s.log.Info("the server was restored from a backup; this device confirms itself")
		return s.exchange(ctx, asked)
	}
	s.resync = nil
	if err := s.cmds.confirm(req.Acks); err != nil {
		// Not worth failing the exchange: at worst a restarted agent sends
		// these acks again, and the server ignores duplicates.
		s.log.Warn("could not record that the server has the acks", "err", err)
	}
	if s.work != nil {
		if err := s.work.confirm(req.StackStatuses, req.JobResults); err != nil {
			s.log.Warn("could not record that the server has the stack statuses and job results", "err", err)
		}
	}
	now := s.now()
	s.plan.Done(due, now)
	dirty := false
	switch {
	case ans.Trust == protocol.TrustWaiting && !s.waiting:
		s.log.Info("waiting for an operator to trust this device in the server's waiting room",
			"edge_id", s.id.EdgeID, "key", s.id.Fingerprint())
		s.waiting = true
	case ans.Trust == protocol.TrustTrusted && s.waiting:
		s.log.Info("trusted by the server", "environment", ans.EnvID)
		s.waiting = false
		s.plan.SnapshotNow(now)
	}
	if ans.Server != nil && env != 0 {
		// Bound (or onboarded): from now on requests are MACed for env.
		s.id.Bind(key, env)
		s.st.Bound, s.st.ServerDH, s.st.EnvID, dirty = true, ans.Server.DH, env, true
		s.log.Info("bound to the server", "environment", env, "edge_id", s.id.EdgeID)
		s.shareKey()
		if s.st.Acked == 0 && pending == nil {
			s.plan.SnapshotNow(now) // trusted on first contact with the onboarding key: none sent yet
		}
	}
	if ans.Mode != protocol.ModeUnset && (ans.Mode == protocol.ModeStandard) != s.standard {
		if err := s.switchMode(ans.Mode); err != nil {
			s.log.Error("could not switch to the mode the server asks for", "err", err)
		} else {
			s.st.Mode, dirty = ans.Mode, true
		}
	}
	if ans.Freq != nil {
		// The one rule, in both modes: a 0 is the built-in default.
		s.plan.SetFrequencies(scheduler.Effective(protocol.Frequencies{}, ans.Freq), now)
	}
	if s.standard && ans.Tunnel == protocol.TunnelRequired && s.tun != nil {
		s.tun.open(s.id.Env)
	}
	if pending != nil && ans.Snapshot != nil && ans.Snapshot.Stored == pending.seq {
		s.st.Acked, s.st.Base, dirty = pending.seq, pending.data, true
	}
	if ans.Snapshot != nil && ans.Snapshot.SendFull {
		s.log.Info("server asked for a full snapshot")
		s.st.Acked, s.st.Base, dirty = 0, nil, true
		s.plan.SnapshotNow(now)
	}
	if dirty {
		if err := s.st.save(s.cfg.DataDir); err != nil {
			return fmt.Errorf("save state: %w", err)
		}
	}
	// Commands run last and synchronously (they are rare); their acks go
	// with the next request. The content they need is kept first.
	if s.work != nil && len(ans.Blobs) > 0 {
		if err := s.work.keepBlobs(ans.Blobs); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
	}
	err = s.runCommands(ctx, ans.Commands)
	if s.work != nil {
		s.work.sweep()
	}
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

// switchMode makes the agent poll (standard) or sync (async) from now on,
// as an operator set its environment on the server.
func (s *syncer) switchMode(m protocol.Mode) error {
	standard := m == protocol.ModeStandard
	if standard && s.tun == nil && s.newTunnel != nil {
		t, err := s.newTunnel()
		if err != nil {
			return fmt.Errorf("tunnel: %w", err)
		}
		s.tun = t
	}
	s.standard = standard
	s.log.Info("the server switched this device's mode", "mode", modeName(standard))
	return nil
}

func modeName(standard bool) string {
	if standard {
		return "standard"
	}
	return "async"
}

// prepareSnapshot collects the device and returns the push to send: a delta
// from the acknowledged base when there is one, else the full snapshot. It
// returns a nil push when nothing changed since the base.
func (s *syncer) prepareSnapshot(ctx context.Context) (*protocol.SnapshotPush, *pendingSnapshot, error) {
	start := s.now()
	next, err := s.col.Collect(ctx)
	if err != nil {
		return nil, nil, err
	}
	if took := s.now().Sub(start); took > slowCollect {
		// A busy engine with many containers can take minutes to inspect
		// on the first collection; say so, or the agent looks hung.
		s.log.Warn("snapshot collection was slow", "took", took.Round(time.Millisecond), "containers", len(next.Containers))
	}
	full, err := protocol.Marshal(next)
	if err != nil {
		return nil, nil, err
	}
	sum := snapshot.HashEncoded(full)
	push := &protocol.SnapshotPush{Seq: s.st.Seq + 1, Hash: sum[:snapshot.HashSize], Data: full}
	if s.st.Acked != 0 && s.st.Base != nil {
		var base snapshot.Snapshot
		if err := protocol.Unmarshal(s.st.Base, &base); err == nil {
			d, err := snapshot.Compute(&base, next)
			if err != nil {
				return nil, nil, err
			}
			if d.Empty() {
				return nil, nil, nil
			}
			if push.Data, err = protocol.Marshal(d); err != nil {
				return nil, nil, err
			}
			push.Base = s.st.Acked
		}
	}
	s.st.Seq = push.Seq
	return push, &pendingSnapshot{seq: push.Seq, data: full}, nil
}

// shareKey gives the work runner the MAC key, which opens sealed secrets.
func (s *syncer) shareKey() {
	if s.work != nil && s.id.MAC != nil {
		k := s.id.MAC
		s.work.mac.Store(&k)
	}
}

func (s *syncer) agentInfo() *protocol.AgentInfo {
	host, _ := os.Hostname()
	return &protocol.AgentInfo{
		Version: Version, Hostname: host, Platform: cmp.Or(s.platform, kube.PlatformDocker), OS: runtime.GOOS, Arch: runtime.GOARCH,
		Groups: s.cfg.Groups, Tags: s.cfg.Tags,
	}
}
