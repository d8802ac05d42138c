package scheduler

import (
	"sync"
	"time"
)

// Tuning of Guard.
const (
	// GuardFactor is how many times its frequency a device may call in a
	// GuardWindow before it is told to slow down.
	GuardFactor = 10
	// GuardFloor is the fewest calls a GuardWindow always allows, so a
	// restart, a retry or a tunnel request never trips a device whose
	// frequency is an hour.
	GuardFloor = 20
	// GuardWindow is the span calls are counted over.
	GuardWindow = time.Minute
	// guardSweep is how many checks pass between sweeps of stale entries.
	guardSweep = 1 << 14
)

// Guard counts each device's calls and tells the ones calling far faster
// than their frequency allows to slow down, so a scheduling bug in one agent
// version cannot become a fleet-wide outage. Keys are the caller's choice
// (environment IDs, waiting devices); it keeps one small entry per key that
// called within the last window. The zero Guard is ready to use.
type Guard struct {
	mu     sync.Mutex // guards seen and checks; held for map work only
	seen   map[uint64]*pace
	checks int
}

// pace is one device's current window.
type pace struct {
	start  time.Time // when the window opened
	calls  int
	limit  int       // the highest limit of the window
	logged time.Time // last time a slow-down was reported for logging
}

// Verdict is what Check decides about one call.
type Verdict struct {
	// RetryAfter is zero when the call may go on; else how long the device
	// should wait: until its window closes.
	RetryAfter time.Duration
	// Log is set at most once a GuardWindow per device, on a slowed call.
	Log bool
	// Calls is the count in the current window, this call included.
	Calls int
}

// Limit is how many calls a window allows a device whose shortest interval
// is every.
func Limit(every time.Duration) int {
	if every <= 0 {
		every = time.Duration(MinFrequency) * time.Second
	}
	return max(GuardFactor*int(GuardWindow/every), GuardFloor)
}

// Check counts one call by key at now, from a device whose shortest interval
// is every, and says whether it must slow down.
func (g *Guard) Check(key uint64, every time.Duration, now time.Time) Verdict {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.seen == nil {
		g.seen = map[uint64]*pace{}
	}
	g.checks++
	if g.checks%guardSweep == 0 {
		g.sweep(now)
	}
	p := g.seen[key]
	if p == nil {
		p = &pace{start: now}
		g.seen[key] = p
	}
	if now.Sub(p.start) >= GuardWindow || now.Before(p.start) {
		p.start, p.calls, p.limit = now, 0, 0
	}
	p.calls++
	// The most any frequency of this window allowed: calls made on time
	// under a shorter interval do not count against one an operator set
	// since, which the device learns only at its next call.
	p.limit = max(p.limit, Limit(every))
	v := Verdict{Calls: p.calls}
	if p.calls <= p.limit {
		return v
	}
	v.RetryAfter = max(p.start.Add(GuardWindow).Sub(now), time.Second)
	if now.Sub(p.logged) >= GuardWindow {
		p.logged, v.Log = now, true
	}
	return v
}

// Forget drops key's entry (its environment was deleted).
func (g *Guard) Forget(key uint64) {
	g.mu.Lock()
	delete(g.seen, key)
	g.mu.Unlock()
}

// Len is the number of keys tracked.
func (g *Guard) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.seen)
}

// sweep drops entries whose window closed more than a window ago and that
// have nothing left to log. Called with mu held.
func (g *Guard) sweep(now time.Time) {
	for k, p := range g.seen {
		if now.Sub(p.start) >= 2*GuardWindow && now.Sub(p.logged) >= GuardWindow {
			delete(g.seen, k)
		}
	}
}
