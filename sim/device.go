package sim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"runtime"
	"strings"
	"time"

	"outpost/edgeagent/ident"
	edgelink "outpost/edgeagent/link"
	"outpost/protocol"
	"outpost/scheduler"
	"outpost/snapshot"
)

// device is one simulated agent, async or standard: its own keys, edge
// ID, counters, MAC key, snapshot sequence and engine, speaking the real
// protocol over its own connection. One exchange serves both modes, as in
// the agent: a standard device posts it to /edge/v1/poll and opens its
// tunnel when the answer asks. Only its own goroutine touches it, but for
// n, ids, env and standard, which never change after newDevice, and tun,
// which is safe for concurrent use.
type device struct {
	n        int
	env      uint64
	standard bool
	ids      []string // its containers, for commands aimed at it
	id       *ident.Identity
	link     *link
	rec      *recorder
	rnd      *mrand.Rand
	freq     protocol.Frequencies
	plan     *scheduler.Plan
	eng      *content
	// Snapshot state, as the agent's state.cbor holds it: the last sequence
	// sent, the last acked and its snapshot (the delta base), and the
	// engine's version it was taken at.
	seq, acked  uint64
	base        *snapshot.Snapshot
	baseVersion int
	// acks is the outbox: acks not yet carried by an answered request.
	acks []protocol.CommandAck
	// got is every command this device was given.
	got map[uint64]bool
	// resync is a restored server's nonce to echo.
	resync []byte
	// stacks is its edge stacks: the content it holds, what it runs, the
	// statuses it owes (stack.go).
	stacks stackState
	// tun is a standard device's tunnel (tunnel.go); nil for async.
	tun *deviceTunnel
}

// pending is a snapshot push awaiting its ack.
type pending struct {
	seq     uint64
	snap    *snapshot.Snapshot
	version int
}

func newDevice(n int, standard bool, key protocol.EdgeKey, server string, src net.IP, capture *snapshot.Snapshot, cfg Config, rec *recorder, now time.Time) (*device, error) {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails
	id, err := ident.Generate(fmt.Sprintf("sim-%d-%s", n, hex.EncodeToString(b[:])), key)
	if err != nil {
		return nil, err
	}
	rnd := mrand.New(mrand.NewPCG(cfg.Seed, uint64(n)))
	d := &device{
		n: n, env: key.EnvironmentID, standard: standard, rec: rec, rnd: rnd,
		id:   id,
		link: newLink(server, src),
		freq: cfg.freq(standard),
		eng:  newContent(capture, n, cfg.ChangesPerHour, now, rnd),
		got:  map[uint64]bool{},
	}
	if standard {
		if d.tun, err = newDeviceTunnel(n, key, id.Key, rec); err != nil {
			return nil, err
		}
	}
	for _, c := range d.eng.cur.Containers {
		d.ids = append(d.ids, c.ID)
	}
	return d, nil
}

// run starts the device at start and exchanges at its plan's ticks until
// ctx ends. Errors are handled as the agent handles them.
func (d *device) run(ctx context.Context, start time.Time) {
	defer d.link.close()
	if d.tun != nil {
		defer d.tun.wait() // after ctx ended, which closes it
	}
	if !scheduler.Wait(ctx, start) {
		return
	}
	// The agent starts on scheduler.Defaults until the first answer; the
	// simulator knows its environments' frequencies and starts on them, so
	// a short run sees them from the start.
	d.plan = scheduler.NewPlan(d.freq, time.Now(), d.rnd)
	for {
		at, inc := d.plan.Next()
		d.link.cl.Idle(time.Until(at)) // as the agent: closed now if the next exchange is far
		if !scheduler.Wait(ctx, at) {
			return
		}
		err := d.exchange(ctx, inc)
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		var pe *protocol.Error
		switch {
		case err == nil:
		case errors.As(err, &pe) && pe.Code == protocol.CodeSlowDown && pe.RetryAfter > 0:
			d.plan.Pause(now, min(time.Duration(pe.RetryAfter)*time.Second, scheduler.MaxRetryAfter))
		default:
			d.plan.Failed(now)
		}
	}
}

// exchange makes one sync or poll request carrying inc and applies the
// answer, as the agent's syncer.exchange does.
func (d *device) exchange(ctx context.Context, inc protocol.Include) error {
	due := inc
	req := protocol.SyncRequest{Version: protocol.Version, EnvID: d.id.Env, Include: inc, Resync: d.resync}
	kind, path := kindPing, "/edge/v1/sync"
	if d.standard {
		kind, path = kindPoll, "/edge/v1/poll"
	}
	if d.id.MAC == nil {
		kind = kindFirst
		req.EdgeID = d.id.EdgeID
		req.Agent = &protocol.AgentInfo{Version: "sim", Hostname: d.eng.cur.Engine.Hostname, Platform: "docker", OS: runtime.GOOS, Arch: runtime.GOARCH}
	}
	var p *pending
	if inc&protocol.IncludeSnapshot != 0 {
		push, pp, err := d.prepareSnapshot()
		if err != nil {
			d.rec.fail("snapshot_encode", err)
			req.Include &^= protocol.IncludeSnapshot
		} else if push == nil {
			req.Include &^= protocol.IncludeSnapshot // nothing changed
		} else {
			req.Snapshot, p = push, pp
		}
	}
	// Acks and stack statuses go with every request until one that
	// carried them is answered.
	req.Acks = d.acks
	req.StackStatuses = d.stacks.owed()
	switch {
	case kind == kindFirst || kind == kindPoll:
	case req.Snapshot != nil:
		kind = kindSnapshot
	case len(req.Acks) > 0 || len(req.StackStatuses) > 0:
		kind = kindCommands
	}
	if err := d.id.Seal(&req, nil); err != nil {
		d.rec.fail("seal", err)
		return err
	}
	var ans protocol.SyncAnswer
	dials := d.link.dials.Load()
	start := time.Now()
	raw, wb, err := d.link.post(ctx, path, &req, &ans, func(body []byte) string { return d.id.BodyProof(req.EnvID, body) })
	took := time.Since(start)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		var pe *protocol.Error
		if errors.As(err, &pe) && pe.Code == protocol.CodeIdentity {
			d.id.Refused()
		}
		d.rec.fail(errKind(err), err)
		return fmt.Errorf("%s %d: %w", path, d.n, err)
	}
	key, env, err := d.id.VerifyAnswer(raw, &ans, req.Proof.Counter)
	if err != nil {
		d.rec.fail("unverified_answer", err)
		return fmt.Errorf("%s %d: %w", path, d.n, err)
	}
	now := time.Now()
	if kind != kindFirst && bringsStack(ans.Commands) {
		kind = kindStack
	}
	d.rec.exchange(d.n, kind, took, wb, d.link.dials.Load() != dials)
	// A restored server asks to be told a nonce; the next exchange echoes
	// it (the agent asks again at once).
	d.resync = ans.Resync
	for _, a := range req.Acks {
		d.rec.commandAcked(a.ID, now)
	}
	d.acks = d.acks[len(req.Acks):]
	for _, st := range d.stacks.confirm(req.StackStatuses) {
		d.rec.stackReported(st.StackID, d.n, now)
	}
	d.plan.Done(due, now)
	if ans.Server != nil && env != 0 {
		d.id.Bind(key, env)
	}
	if ans.Freq != nil {
		d.plan.SetFrequencies(scheduler.Effective(protocol.Frequencies{}, ans.Freq), now)
	}
	if p != nil && ans.Snapshot != nil && ans.Snapshot.Stored == p.seq {
		d.acked, d.base, d.baseVersion = p.seq, p.snap, p.version
	}
	if ans.Snapshot != nil && ans.Snapshot.SendFull {
		d.acked, d.base = 0, nil
		d.plan.SnapshotNow(now)
	}
	if d.tun != nil && ans.Tunnel == protocol.TunnelRequired {
		d.tun.open(ctx, d.eng.cur, d.rnd)
	}
	// Commands are acked at the next exchange. Nothing runs: an engine
	// command is acked ok, a stack command taken as the agent takes it
	// and reported running (stack.go).
	if err := d.stacks.keep(ans.Blobs); err != nil {
		d.rec.fail("stack_content", err)
	}
	for _, c := range ans.Commands {
		if d.got[c.ID] {
			continue // given again before its ack was answered
		}
		d.got[c.ID] = true
		d.rec.commandDelivered(c.ID, now)
		ack := protocol.CommandAck{ID: c.ID, Status: protocol.StatusOK, Finished: now.Unix()}
		if isStackCommand(c) {
			stack, err := d.stacks.take(c, now)
			d.rec.stackCommand(c.ID, stack, d.n, now)
			if err != nil {
				d.rec.fail("stack_command", err)
				ack.Status, ack.Error = protocol.StatusFailed, err.Error()
			}
		}
		d.acks = append(d.acks, ack)
	}
	return nil
}

// prepareSnapshot is the agent's: a delta from the acked base when there is
// one, else the full snapshot; nil when nothing changed since the base.
func (d *device) prepareSnapshot() (*protocol.SnapshotPush, *pending, error) {
	d.eng.advance(time.Now(), d.rnd)
	if d.acked != 0 && d.base != nil && d.eng.version == d.baseVersion {
		return nil, nil, nil
	}
	full, err := protocol.Marshal(d.eng.cur)
	if err != nil {
		return nil, nil, err
	}
	var next snapshot.Snapshot
	if err := protocol.Unmarshal(full, &next); err != nil {
		return nil, nil, err
	}
	sum := snapshot.HashEncoded(full)
	push := &protocol.SnapshotPush{Seq: d.seq + 1, Hash: sum[:snapshot.HashSize], Data: full}
	if d.acked != 0 && d.base != nil {
		delta, err := snapshot.Compute(d.base, &next)
		if err != nil {
			return nil, nil, err
		}
		if delta.Empty() {
			return nil, nil, nil
		}
		if push.Data, err = protocol.Marshal(delta); err != nil {
			return nil, nil, err
		}
		push.Base = d.acked
	}
	d.seq = push.Seq
	return push, &pending{seq: push.Seq, snap: &next, version: d.eng.version}, nil
}

// errKind names an exchange's failure for the report.
func errKind(err error) string {
	var pe *protocol.Error
	var se *edgelink.StatusError
	var ne net.Error
	switch {
	case errors.As(err, &pe):
		return "server_" + pe.Code
	case errors.As(err, &se):
		return fmt.Sprintf("http_%d", se.Code)
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	s := err.Error()
	for _, k := range []string{"connection refused", "connection reset", "broken pipe", "EOF", "decode answer", "tls"} {
		if strings.Contains(s, k) {
			return strings.ReplaceAll(k, " ", "_")
		}
	}
	return "other"
}
