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
	base := Rules{Max: 2, PerMinute: 100, PerNetwork: 100, Total: 100}
	for _, tc := range []struct {
		name    string
		rules   Rules
		waiting int
		want    Decision
	}{
		{"unknown device waits", base, 0, Wait},
		{"room full", base, 2, Full},
		{"preauthorized edge ID with its key", Rules{Max: 2, PerMinute: 100, PerNetwork: 100, Total: 100, PreauthorizedEdgeIDs: []string{"edge-9 SHA256:k"}}, 2, Trust},
		{"preauthorized edge ID, another key", Rules{Max: 2, PerMinute: 100, PerNetwork: 100, Total: 100, PreauthorizedEdgeIDs: []string{"edge-9 SHA256:other"}}, 0, Wait},
		{"preauthorized edge ID alone", Rules{Max: 2, PerMinute: 100, PerNetwork: 100, Total: 100, PreauthorizedEdgeIDs: []string{"edge-9"}}, 0, Wait},
		{"preauthorized key", Rules{Max: 2, PerMinute: 100, PerNetwork: 100, Total: 100, PreauthorizedKeys: []string{"SHA256:k"}}, 0, Trust},
		{"trust on first connect", Rules{Max: 2, PerMinute: 100, PerNetwork: 100, Total: 100, TrustOnFirstConnect: true}, 0, Trust},
		{"no new devices allowed", Rules{Max: 2, PerMinute: 0, PerNetwork: 100, Total: 100}, 0, SlowDown},
		{"preauthorized key, whatever the limits", Rules{Max: 2, PreauthorizedKeys: []string{"SHA256:k"}}, 2, Trust},
	} {
		if got := Decide(tc.rules, NewLimiter(c.now), "edge-9", "SHA256:k", "1.2.3.4", tc.waiting); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// The rate limit holds for rule-trusted devices too.
	l := NewLimiter(c.now)
	tofu := Rules{Max: 2, PerMinute: 3, PerNetwork: 100, Total: 100, TrustOnFirstConnect: true}
	for range 3 {
		Decide(tofu, l, "e", "k", "1.2.3.4", 0)
	}
	if got := Decide(tofu, l, "e", "k", "1.2.3.4", 0); got != SlowDown {
		t.Fatalf("4th new device in a minute under trust-on-first-connect: %v", got)
	}
}

// A flood from many addresses of one network, or from many networks, is
// slowed down by the network and overall limits; a device a preauthorization
// names still gets in.
func TestDecideFloodFromManyAddresses(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	r := Rules{Max: 1000, PerMinute: 10, PerNetwork: 30, Total: 100, PreauthorizedKeys: []string{"SHA256:real"}}
	l := NewLimiter(c.now)
	count := func(addrs func(i int) string, n int) (waited int) {
		for i := range n {
			if Decide(r, l, fmt.Sprint("flood-", i), fmt.Sprint("SHA256:f", i), addrs(i), 0) == Wait {
				waited++
			}
		}
		return waited
	}
	if got := count(func(i int) string { return fmt.Sprintf("127.0.0.%d", i%250+1) }, 120); got != 30 {
		t.Errorf("120 devices from 120 addresses of one /24: %d waited, want the network's 30", got)
	}
	if got := count(func(i int) string { return fmt.Sprintf("2001:db8:%x::%x", i, i) }, 200); got != 70 {
		t.Errorf("200 devices from 200 IPv6 /64s after that: %d waited, want the 70 left of the minute's 100", got)
	}
	if got := Decide(r, l, "real", "SHA256:real", "127.0.0.9", 1000); got != Trust {
		t.Errorf("the preauthorized device during the flood: %v", got)
	}
	c.t = c.t.Add(time.Minute)
	if got := count(func(i int) string { return fmt.Sprintf("10.9.%d.1", i) }, 5); got != 5 {
		t.Errorf("a minute later, new networks: %d of 5 waited", got)
	}
}
