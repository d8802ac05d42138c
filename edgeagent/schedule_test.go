package edgeagent

import (
	"context"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"outpost/protocol"
	"outpost/scheduler"
	"outpost/snapshot"
)

// fakeClock is the agent loop's clock in tests: waiting moves it forward at
// once, so a day of exchanges runs in seconds.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// waitUntil returns a wait function that jumps the clock to each exchange's
// time, and stops the loop at the first exchange due at or after stop, or
// after limit exchanges (a loop that never goes quiet stops the clock).
func (c *fakeClock) waitUntil(stop time.Time, limit int) func(context.Context, time.Time) bool {
	n := 0
	return func(ctx context.Context, until time.Time) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if n++; ctx.Err() != nil || n > limit {
			return false
		}
		if !until.Before(stop) {
			c.t = stop
			return false
		}
		if until.After(c.t) {
			c.t = until
		}
		return true
	}
}

// countingCollector counts collections: one per snapshot slot.
type countingCollector struct {
	fakeCollector
	mu    sync.Mutex
	times []time.Time
	clock *fakeClock
}

func (c *countingCollector) Collect(ctx context.Context) (*snapshot.Snapshot, error) {
	c.mu.Lock()
	c.times = append(c.times, c.clock.now())
	c.mu.Unlock()
	return c.fakeCollector.Collect(ctx)
}

// seenRequest is one request as the scripted server saw it.
type seenRequest struct {
	at       time.Time
	snapshot bool
	path     string
}

// TestScheduleForADay runs the real agent loop (plan, exchange, answers) for
// 24 hours of a fake clock against a scripted server, restarting the agent
// from its saved state at noon, and counts what it sends: a standard agent
// polls at its interval and sends one snapshot ever, an async agent makes one
// exchange per command interval with a snapshot slot every snapshot interval,
// and a device in the waiting room checks in at its interval and sends no
// snapshot. Each gap between exchanges stays within the plan's jitter.
func TestScheduleForADay(t *testing.T) {
	if testing.Short() {
		t.Skip("a day of exchanges over loopback HTTPS takes a few seconds")
	}
	day := 24 * time.Hour
	cases := []struct {
		name     string
		standard bool
		env      uint64 // 0: the onboarding key
		trust    protocol.Trust
		freq     protocol.Frequencies // what the server answers
		every    time.Duration        // the exchange interval it calls for
		snapshot time.Duration        // snapshot slots; 0: none after the first contact
	}{
		// What the server answers a standard environment with {"ping":5}.
		{name: "standard", standard: true, env: 7, trust: protocol.TrustTrusted,
			freq: protocol.Frequencies{Ping: 5, Snapshot: 300, Command: 5}, every: 5 * time.Second, snapshot: 5 * time.Minute},
		// What an older server answered: no snapshot frequency at all. This
		// one flooded five minutes after binding; a 0 is now the default.
		{name: "standard without snapshot frequency", standard: true, env: 7, trust: protocol.TrustTrusted,
			freq: protocol.Frequencies{Ping: 5, Command: 5}, every: 5 * time.Second, snapshot: 5 * time.Minute},
		{name: "async", env: 7, trust: protocol.TrustTrusted,
			freq: protocol.Frequencies{Ping: 60, Snapshot: 300, Command: 60}, every: time.Minute, snapshot: 5 * time.Minute},
		// What answerWaiting says: every kind at the global ping frequency.
		{name: "waiting", env: 0, trust: protocol.TrustWaiting,
			freq: protocol.Frequencies{Ping: 60, Snapshot: 60, Command: 60}, every: time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Unix(1_800_000_000, 0)
			clock := &fakeClock{t: start}
			var mu sync.Mutex
			var seen []seenRequest
			srv := newScriptedServer(t, nil)
			srv.answer = func(req *protocol.SyncRequest) (int, any) {
				f := tc.freq
				ans := &protocol.SyncAnswer{Version: protocol.Version, Trust: tc.trust, Freq: &f}
				if tc.trust == protocol.TrustTrusted {
					ans.EnvID = tc.env
				}
				if req.Snapshot != nil {
					ans.Snapshot = &protocol.SnapshotAck{Stored: req.Snapshot.Seq}
				}
				return http.StatusOK, ans
			}
			hs := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// The request's decoded Snapshot is read from srv's log below.
				srv.ServeHTTP(w, r)
				mu.Lock()
				seen = append(seen, seenRequest{at: clock.now(), snapshot: srv.last().Snapshot != nil, path: r.URL.Path})
				mu.Unlock()
			}))
			defer hs.Close()
			dir := t.TempDir()
			col := &countingCollector{fakeCollector: fakeCollector{d: docker(snapshot.StateRunning)}, clock: clock}
			restart := start.Add(day / 2).Add(1234 * time.Millisecond)
			for i, stop := range []time.Time{restart, start.Add(day)} {
				// A new agent on the same data dir, planned as Run plans it.
				s := newTestSyncerFor(t, srv, hs.URL, dir, col, tc.env)
				s.standard, s.now, s.wait = tc.standard, clock.now, clock.waitUntil(stop, 2*int(day/tc.every))
				s.plan = newPlan(clock.now(), mrand.New(mrand.NewPCG(uint64(i), 9)))
				if err := s.run(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if len(srv.refused) != 0 {
				t.Fatalf("proofs refused: %v", srv.refused[:min(3, len(srv.refused))])
			}

			want := int(day / tc.every)
			lo, hi := want*97/100, want*103/100+2 // jitter averages out over a day; the restart adds one
			t.Logf("%s: %d exchanges in 24 h (%d called for), %d snapshot collections", tc.name, len(seen), want, len(col.times))
			if len(seen) < lo || len(seen) > hi {
				t.Fatalf("%d exchanges in 24 h, want %d to %d", len(seen), lo, hi)
			}
			wantPath := "/edge/v1/sync"
			if tc.standard {
				wantPath = "/edge/v1/poll"
			}
			jitter := time.Duration(float64(tc.every) * scheduler.Jitter)
			ahead := time.Duration(0) // one kind alone: nothing to merge
			if tc.snapshot != 0 {
				ahead = time.Duration(float64(tc.every) * (0.5 + scheduler.Jitter))
			}
			snapshots := 0
			for i, r := range seen {
				if r.path != wantPath {
					t.Fatalf("exchange %d went to %s, want %s", i, r.path, wantPath)
				}
				if r.snapshot {
					snapshots++
				}
				if i == 0 || r.at.After(restart) && !seen[i-1].at.After(restart) {
					continue // the first exchange of each start comes within the start spread
				}
				// Never later than the jittered interval; a kind due soon
				// after another is pulled ahead into its exchange, by at
				// most the plan's merge window.
				gap := r.at.Sub(seen[i-1].at)
				if gap < tc.every-jitter-ahead || gap > tc.every+jitter {
					t.Fatalf("exchange %d came %v after the one before (at %v); want %v ± %v, or up to %v early",
						i, gap, r.at.Sub(start), tc.every, jitter, ahead)
				}
			}
			switch {
			case tc.trust == protocol.TrustWaiting && snapshots != 0:
				t.Fatalf("a waiting device sent %d snapshots", snapshots)
			case tc.trust == protocol.TrustTrusted && snapshots != 1:
				// The engine never changes: one full snapshot, then nothing
				// to send, across the restart too (the base is kept).
				t.Fatalf("%d snapshots sent, want the first contact's only", snapshots)
			}
			if tc.snapshot == 0 {
				if tc.trust == protocol.TrustTrusted && len(col.times) != 1 {
					t.Fatalf("%d snapshot collections, want one on first contact", len(col.times))
				}
				return
			}
			// Snapshot slots ride with exchanges: never later than their
			// jittered interval, pulled ahead by at most the merge window.
			sj := time.Duration(float64(tc.snapshot) * scheduler.Jitter)
			for i := 1; i < len(col.times); i++ {
				if col.times[i].After(restart) && !col.times[i-1].After(restart) {
					continue
				}
				gap := col.times[i].Sub(col.times[i-1])
				if gap < tc.snapshot-sj-ahead || gap > tc.snapshot+sj {
					t.Fatalf("snapshot slot %d came %v after the one before", i, gap)
				}
			}
			if n, min := len(col.times), int(day/(tc.snapshot+sj)); n < min || n > int(day/(tc.snapshot-sj-ahead))+2 {
				t.Fatalf("%d snapshot slots in 24 h, want at least %d", n, min)
			}
		})
	}
}

// A slow_down answer with a retry-after holds the agent back that long (at
// most maxRetryAfter), then it goes back to its own frequency.
func TestAgentHonoursSlowDown(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	clock := &fakeClock{t: start}
	var times []time.Time
	srv := newScriptedServer(t, nil)
	srv.answer = func(req *protocol.SyncRequest) (int, any) {
		times = append(times, clock.now())
		switch len(times) {
		case 3:
			return http.StatusTooManyRequests, &protocol.Error{Version: protocol.Version, Code: protocol.CodeSlowDown, RetryAfter: 40}
		case 5:
			return http.StatusTooManyRequests, &protocol.Error{Version: protocol.Version, Code: protocol.CodeSlowDown, RetryAfter: 7 * 24 * 3600}
		}
		return ackAll(req)
	}
	hs := httptest.NewTLSServer(srv)
	defer hs.Close()
	s := newTestSyncer(t, srv, hs.URL, t.TempDir(), &fakeCollector{d: docker()})
	s.now, s.wait = clock.now, clock.waitUntil(start.Add(time.Hour), 8)
	s.plan = newPlan(clock.now(), mrand.New(mrand.NewPCG(3, 3)))
	if err := s.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(times) < 7 {
		t.Fatalf("%d exchanges", len(times))
	}
	gap := func(i int) time.Duration { return times[i].Sub(times[i-1]) }
	if g := gap(3); g < 40*time.Second || g > 45*time.Second {
		t.Fatalf("after slow_down 40 s the agent called again %v later", g)
	}
	if g := gap(4); g > 6*time.Second {
		t.Fatalf("after the pause the agent did not go back to its 5 s frequency: %v", g)
	}
	if g := gap(5); g < maxRetryAfter || g > maxRetryAfter*11/10+time.Second {
		t.Fatalf("a week-long retry-after held the agent %v, want about %v", g, maxRetryAfter)
	}
}

// The server's answer switches the agent's mode: it polls from the next
// exchange on, and keeps the mode in its state for the next start.
func TestServerSwitchesMode(t *testing.T) {
	var paths []string
	mode := protocol.ModeStandard
	srv := newScriptedServer(t, nil)
	srv.answer = func(req *protocol.SyncRequest) (int, any) {
		code, ans := ackAll(req)
		ans.(*protocol.SyncAnswer).Mode = mode
		return code, ans
	}
	hs := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.Path)
		srv.ServeHTTP(w, r)
	}))
	defer hs.Close()
	dir := t.TempDir()
	s := newTestSyncer(t, srv, hs.URL, dir, &fakeCollector{d: docker()})
	ctx := context.Background()
	for _, m := range []protocol.Mode{protocol.ModeStandard, protocol.ModeUnset, protocol.ModeAsync, protocol.ModeUnset} {
		mode = m
		if err := s.exchange(ctx, all); err != nil {
			t.Fatal(err)
		}
		if m == protocol.ModeStandard {
			st, err := loadState(dir)
			if err != nil || st.Mode != protocol.ModeStandard {
				t.Fatalf("state after the switch: %+v %v", st, err)
			}
		}
	}
	want := []string{"/edge/v1/sync", "/edge/v1/poll", "/edge/v1/poll", "/edge/v1/sync"}
	if len(paths) != len(want) {
		t.Fatalf("paths %v", paths)
	}
	for i := range want {
		if paths[i] != want[i] {
			t.Fatalf("exchange %d went to %s, want %s (all: %v)", i, paths[i], want[i], paths)
		}
	}
}
