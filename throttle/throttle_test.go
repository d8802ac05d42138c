package throttle

import (
	"testing"
	"time"
)

func TestLockoutGrowsAndResets(t *testing.T) {
	p := Policy{Free: 5, Base: time.Second, Max: 15 * time.Minute, Reset: time.Hour}
	th := New(p)
	now := time.Unix(1_800_000_000, 0)
	for i := range 5 {
		if d := th.Fail("k", now); d != 0 {
			t.Fatalf("free failure %d locked for %v", i+1, d)
		}
	}
	// Each failure after its lockout ends doubles it, up to the cap.
	want := time.Second
	for range 14 {
		d := th.Fail("k", now)
		if d != min(want, p.Max) {
			t.Fatalf("lockout %v, want %v", d, min(want, p.Max))
		}
		if l := th.Locked("k", now); l != d {
			t.Fatalf("Locked = %v right after a %v lockout", l, d)
		}
		now = now.Add(d)
		if l := th.Locked("k", now); l != 0 {
			t.Fatalf("still locked %v after the lockout ended", l)
		}
		want *= 2
	}
	// An hour without failures: forgotten, the free failures are back.
	now = now.Add(time.Hour)
	if d := th.Fail("k", now); d != 0 {
		t.Fatalf("after the reset period a failure locks for %v", d)
	}
	// Other keys are not affected; a success forgets the key.
	if th.Locked("other", now) != 0 {
		t.Fatal("an unrelated key is locked")
	}
	for range 10 {
		th.Fail("k", now)
	}
	th.Succeed("k")
	if th.Locked("k", now) != 0 {
		t.Fatal("locked after a success")
	}
	th.Fail("stale", now)
	th.Sweep(now.Add(2 * time.Hour))
	if th.Len() != 0 {
		t.Fatalf("%d keys after a sweep", th.Len())
	}
}

func TestNetwork(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.17:4431":            "192.0.2.0/24",
		"192.0.2.200":                "192.0.2.0/24",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[::ffff:192.0.2.9]:1":       "192.0.2.0/24",
		"not-an-address":             "not-an-address",
	} {
		if got := Network(in); got != want {
			t.Errorf("Network(%q) = %q, want %q", in, got, want)
		}
	}
}
