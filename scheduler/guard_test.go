package scheduler

import (
	"testing"
	"time"
)

func TestGuard(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	var g Guard
	every := 5 * time.Second
	limit := Limit(every)
	if limit != 120 {
		t.Fatalf("Limit(5s) = %d, want 10 x 12 calls a minute", limit)
	}
	// A device at its frequency is never slowed, over an hour.
	for i := range 720 {
		if v := g.Check(1, every, start.Add(time.Duration(i)*every)); v.RetryAfter != 0 {
			t.Fatalf("call %d at the device's own frequency slowed: %+v", i, v)
		}
	}
	// A device calling 100 times a second is slowed after limit calls in its
	// window, until the window closes, and logged once in it.
	t0 := start.Add(2 * time.Hour)
	logs := 0
	for i := range 6000 {
		now := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		v := g.Check(2, every, now)
		if v.Log {
			logs++
		}
		switch {
		case v.Calls <= limit && v.RetryAfter != 0:
			t.Fatalf("call %d (%d in window) slowed below the limit", i, v.Calls)
		case v.Calls > limit && (v.RetryAfter <= 0 || v.RetryAfter > GuardWindow):
			t.Fatalf("call %d over the limit: retry after %v", i, v.RetryAfter)
		case v.Calls > limit && now.Add(v.RetryAfter).Before(t0.Add(GuardWindow)):
			t.Fatalf("retry after %v ends before the window closes", v.RetryAfter)
		}
	}
	if logs != 1 {
		t.Fatalf("%d log lines for one minute of flooding, want 1", logs)
	}
	// The next window starts afresh; an hourly device still gets the floor.
	if v := g.Check(2, every, t0.Add(GuardWindow)); v.RetryAfter != 0 || v.Calls != 1 {
		t.Fatalf("new window: %+v", v)
	}
	if Limit(time.Hour) != GuardFloor {
		t.Fatalf("Limit(1h) = %d, want the floor %d", Limit(time.Hour), GuardFloor)
	}
	// Stale entries are swept.
	late := t0.Add(time.Hour)
	for i := range guardSweep {
		g.Check(uint64(1000+i%3), every, late)
	}
	if n := g.Len(); n != 3 {
		t.Fatalf("%d entries after a sweep, want the 3 live ones", n)
	}
}
