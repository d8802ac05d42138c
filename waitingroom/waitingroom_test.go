package waitingroom

import (
	"fmt"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestLimiterPerSource(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	l := NewLimiter(c.now)
	for i := range 10 {
		if !l.Allow("10.0.0.1", 10) {
			t.Fatalf("request %d of a burst of 10 refused", i)
		}
	}
	if l.Allow("10.0.0.1", 10) {
		t.Fatal("11th request in the same instant allowed")
	}
	if !l.Allow("10.0.0.2", 10) {
		t.Fatal("another source was limited by the first")
	}
	c.t = c.t.Add(6 * time.Second) // one token refills every 6 s at 10/min
	if !l.Allow("10.0.0.1", 10) || l.Allow("10.0.0.1", 10) {
		t.Fatal("refill is not one token per 6 s")
	}
	// A day of untouched sources is forgotten, not kept.
	for i := range 1000 {
		l.Allow(fmt.Sprint("src", i), 10)
	}
	c.t = c.t.Add(time.Hour)
	l.Allow("late", 10)
	if n := len(l.buckets); n != 1 {
		t.Fatalf("%d buckets kept after an hour idle, want 1", n)
	}
}

func TestDecide(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	base := Rules{Max: 2, PerMinute: 100}
	for _, tc := range []struct {
		name    string
		rules   Rules
		waiting int
		want    Decision
	}{
		{"unknown device waits", base, 0, Wait},
		{"room full", base, 2, Full},
		{"preauthorized edge ID with its key", Rules{Max: 2, PerMinute: 100, PreauthorizedEdgeIDs: []string{"edge-9 SHA256:k"}}, 2, Trust},
		{"preauthorized edge ID, another key", Rules{Max: 2, PerMinute: 100, PreauthorizedEdgeIDs: []string{"edge-9 SHA256:other"}}, 0, Wait},
		{"preauthorized edge ID alone", Rules{Max: 2, PerMinute: 100, PreauthorizedEdgeIDs: []string{"edge-9"}}, 0, Wait},
		{"preauthorized key", Rules{Max: 2, PerMinute: 100, PreauthorizedKeys: []string{"SHA256:k"}}, 0, Trust},
		{"trust on first connect", Rules{Max: 2, PerMinute: 100, TrustOnFirstConnect: true}, 0, Trust},
		{"no new devices allowed", Rules{Max: 2, PerMinute: 0}, 0, SlowDown},
	} {
		if got := Decide(tc.rules, NewLimiter(c.now), "edge-9", "SHA256:k", "1.2.3.4", tc.waiting); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// The rate limit holds for rule-trusted devices too.
	l := NewLimiter(c.now)
	tofu := Rules{Max: 2, PerMinute: 3, TrustOnFirstConnect: true}
	for range 3 {
		Decide(tofu, l, "e", "k", "1.2.3.4", 0)
	}
	if got := Decide(tofu, l, "e", "k", "1.2.3.4", 0); got != SlowDown {
		t.Fatalf("4th new device in a minute under trust-on-first-connect: %v", got)
	}
}
