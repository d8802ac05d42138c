package scheduler

import (
	"math/rand/v2"
	"testing"
	"time"

	"outpost/protocol"
)

func TestPlanMergesAndKeepsFrequencies(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	f := protocol.Frequencies{Ping: 60, Snapshot: 300, Command: 60}
	p := NewPlan(f, start, rand.New(rand.NewPCG(1, 2)))
	now := start
	counts := map[protocol.Include]int{}
	exchanges := 0
	week := 7 * 24 * time.Hour
	for now.Sub(start) < week {
		at, inc := p.Next()
		if at.Before(now) {
			t.Fatalf("plan went back in time: %v < %v", at, now)
		}
		if inc == 0 {
			t.Fatal("exchange carries nothing")
		}
		now = at
		exchanges++
		for _, k := range kinds {
			if inc&k != 0 {
				counts[k]++
			}
		}
		p.Done(inc, now)
	}
	// Ping and command share a frequency, so they always travel together:
	// one exchange per minute, not two.
	if counts[protocol.IncludePing] != counts[protocol.IncludeCommands] {
		t.Errorf("ping %d and command %d ticks not merged", counts[protocol.IncludePing], counts[protocol.IncludeCommands])
	}
	perWeek := func(s int) int { return int(week / (time.Duration(s) * time.Second)) }
	within := func(name string, got, want int) {
		if got < want*85/100 || got > want*115/100 {
			t.Errorf("%s: %d ticks in a week, want about %d", name, got, want)
		}
	}
	within("ping", counts[protocol.IncludePing], perWeek(60))
	within("snapshot", counts[protocol.IncludeSnapshot], perWeek(300))
	if exchanges != counts[protocol.IncludePing] {
		t.Errorf("%d exchanges for %d pings: snapshot ticks were not merged into pings", exchanges, counts[protocol.IncludePing])
	}
}

func TestPlanJitterSpreadsAFleet(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	f := protocol.Frequencies{Ping: 60, Snapshot: 60, Command: 60}
	seen := map[int64]int{}
	for i := range 1000 {
		p := NewPlan(f, start, rand.New(rand.NewPCG(uint64(i), 7)))
		at, _ := p.Next()
		seen[at.Sub(start).Milliseconds()/1000]++
	}
	// 1000 agents booting together spread over the 10 s start window: no
	// second gets more than a quarter of them.
	if len(seen) < 10 {
		t.Fatalf("first exchanges fell in only %d distinct seconds", len(seen))
	}
	for s, n := range seen {
		if n > 250 {
			t.Errorf("%d agents call in second %d", n, s)
		}
	}
}

func TestPlanBackoffAndFrequencyChange(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	p := NewPlan(protocol.Frequencies{Ping: 3600, Snapshot: 3600, Command: 3600}, start, rand.New(rand.NewPCG(3, 4)))
	at, inc := p.Next()
	for range 20 {
		p.Failed(at)
		next, inc2 := p.Next()
		if inc2 != inc {
			t.Fatalf("retry carries %v, want %v", inc2, inc)
		}
		if d := next.Sub(at); d <= 0 || d > MaxBackoff {
			t.Fatalf("retry delay %v out of (0, %v]", d, MaxBackoff)
		}
		at = next
	}
	p.Done(inc, at)
	p.SetFrequencies(protocol.Frequencies{Ping: 5, Snapshot: 3600, Command: 3600}, at)
	next, inc := p.Next()
	if next.Sub(at) > 6*time.Second || inc&protocol.IncludePing == 0 {
		t.Fatalf("after the ping frequency dropped to 5 s the next exchange is %v away carrying %v", next.Sub(at), inc)
	}
}

func TestEffective(t *testing.T) {
	g := protocol.Frequencies{Ping: 30}
	got := Effective(g, &protocol.Frequencies{Snapshot: 10})
	want := protocol.Frequencies{Ping: 30, Snapshot: 10, Command: Defaults.Command}
	if got != want {
		t.Fatalf("Effective = %+v, want %+v", got, want)
	}
}

// An exchange that leaves a due kind out (nothing changed, a standard agent's
// snapshot, a device still waiting) must not leave its slot due: that made a
// standard agent poll thousands of times a second five minutes after binding.
func TestPlanNoSlotStaysDue(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	rnd := rand.New(rand.NewPCG(5, 6))
	// The standard agent's case, as it happened: planned with the defaults,
	// then told to poll every 5 s with no snapshot, and every exchange
	// leaves the snapshot out.
	p := NewPlan(Defaults, start, rnd)
	now := start
	for i := range 100_000 {
		at, inc := p.Next()
		if i > 0 && at.Sub(now) < time.Second {
			t.Fatalf("exchange %d comes %v after the last one (at %v): a slot stayed due", i, at.Sub(now), at.Sub(start))
		}
		now = at
		p.Done(inc&^protocol.IncludeSnapshot, now)
		if i == 0 {
			p.SetFrequencies(protocol.Frequencies{Ping: 5, Snapshot: 365 * 24 * 3600, Command: 5}, now)
		}
	}
	// Any kinds at all, random frequencies: after Done, nothing is due now.
	for range 10_000 {
		f := protocol.Frequencies{Ping: 1 + rnd.Uint32N(600), Snapshot: 1 + rnd.Uint32N(600), Command: 1 + rnd.Uint32N(600)}
		p := NewPlan(f, start, rnd)
		now := start
		for range 20 {
			at, _ := p.Next()
			now = at.Add(time.Duration(rnd.Int64N(int64(5 * time.Second)))) // a slow exchange
			p.Done(protocol.Include(rnd.UintN(8)), now)
			if next, _ := p.Next(); !next.After(now) {
				t.Fatalf("freq %+v: after Done at %v the next exchange is at %v", f, now.Sub(start), next.Sub(start))
			}
		}
	}
}

func TestPlanPause(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	p := NewPlan(protocol.Frequencies{Ping: 5, Snapshot: 300, Command: 5}, start, rand.New(rand.NewPCG(7, 8)))
	at, inc := p.Next()
	p.Pause(at, 40*time.Second)
	next, inc2 := p.Next()
	if d := next.Sub(at); d < 40*time.Second || d > 44*time.Second || inc2 != inc {
		t.Fatalf("paused 40 s: next exchange %v later carrying %v, want 40-44 s carrying %v", d, inc2, inc)
	}
	p.Done(inc2, next)
	if again, _ := p.Next(); again.Sub(next) > 6*time.Second {
		t.Fatalf("after the pause the plan did not go back to its frequency: next in %v", again.Sub(next))
	}
}
