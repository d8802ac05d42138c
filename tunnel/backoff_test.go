package tunnel_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"outpost/tunnel"
)

// Every wait lies in [0, min(Max, Base·2ⁿ)), whatever the attempt,
// including attempts far past the point where Base·2ⁿ would overflow.
func TestBackoffBounds(t *testing.T) {
	b := tunnel.Backoff{Base: 100 * time.Millisecond, Max: 30 * time.Second, Rand: rand.New(rand.NewPCG(1, 2))}
	for _, tc := range []struct {
		attempt int
		ceil    time.Duration
	}{
		{-1, 100 * time.Millisecond},
		{0, 100 * time.Millisecond},
		{1, 200 * time.Millisecond},
		{5, 3200 * time.Millisecond},
		{8, 25600 * time.Millisecond},
		{9, 30 * time.Second},
		{62, 30 * time.Second},
		{63, 30 * time.Second},
		{1000, 30 * time.Second},
	} {
		for range 1000 {
			if d := b.Next(tc.attempt); d < 0 || d >= tc.ceil {
				t.Fatalf("Next(%d) = %v, want in [0, %v)", tc.attempt, d, tc.ceil)
			}
		}
	}
	if d := (tunnel.Backoff{}).Next(0); d < 0 || d >= time.Second {
		t.Errorf("default Next(0) = %v, want in [0, 1s)", d)
	}
	if d := (tunnel.Backoff{}).Next(100); d < 0 || d >= 2*time.Minute {
		t.Errorf("default Next(100) = %v, want in [0, 2m)", d)
	}
}

// Full jitter: waits spread over the whole range, about uniformly.
func TestBackoffJitter(t *testing.T) {
	b := tunnel.Backoff{Base: time.Second, Max: time.Hour, Rand: rand.New(rand.NewPCG(3, 4))}
	const n, ceil = 10000, 8 * time.Second // attempt 3
	var sum time.Duration
	lo, hi := ceil, time.Duration(0)
	seen := make(map[time.Duration]bool)
	for range n {
		d := b.Next(3)
		sum += d
		lo, hi = min(lo, d), max(hi, d)
		seen[d] = true
	}
	if mean := sum / n; mean < ceil/2-ceil/20 || mean > ceil/2+ceil/20 {
		t.Errorf("mean %v, want %v ± 5%%", mean, ceil/2)
	}
	if lo > ceil/100 || hi < ceil-ceil/100 {
		t.Errorf("range [%v, %v], want nearly [0, %v)", lo, hi, ceil)
	}
	if len(seen) < n*99/100 {
		t.Errorf("%d distinct waits of %d", len(seen), n)
	}
}

// The same seed gives the same waits; another seed, others.
func TestBackoffDeterministic(t *testing.T) {
	seq := func(seed uint64) []time.Duration {
		b := tunnel.Backoff{Base: time.Second, Max: time.Minute, Rand: rand.New(rand.NewPCG(seed, 0))}
		var s []time.Duration
		for i := range 20 {
			s = append(s, b.Next(i))
		}
		return s
	}
	a, b, c := seq(7), seq(7), seq(8)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("seed 7 gave %v then %v at %d", a[i], b[i], i)
		}
	}
	same := 0
	for i := range a {
		if a[i] == c[i] {
			same++
		}
	}
	if same > 1 {
		t.Errorf("seeds 7 and 8 agree on %d of %d waits", same, len(a))
	}
}

// Wait sleeps Next's wait through the injected Sleep, and a real wait ends
// with its context.
func TestBackoffWait(t *testing.T) {
	var slept time.Duration
	b := tunnel.Backoff{Base: time.Hour, Rand: rand.New(rand.NewPCG(5, 6)),
		Sleep: func(_ context.Context, d time.Duration) error { slept = d; return nil }}
	want := tunnel.Backoff{Base: time.Hour, Rand: rand.New(rand.NewPCG(5, 6))}.Next(2)
	if err := b.Wait(t.Context(), 2); err != nil || slept != want {
		t.Errorf("Wait slept %v (%v), want %v", slept, err, want)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	real := tunnel.Backoff{Base: time.Hour, Max: time.Hour, Rand: rand.New(rand.NewPCG(5, 6))}
	if err := real.Wait(ctx, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait = %v, want the context's end", err)
	}
}
