package throttle

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Policy says how a key is locked.
type Policy struct {
	Free  int           // failures allowed before the first lockout
	Base  time.Duration // the first lockout
	Max   time.Duration // the longest lockout
	Reset time.Duration // a key with no failure for this long is forgotten
}

// Throttle counts failures per key. The zero value is not usable: make one
// with New.
type Throttle struct {
	p     Policy
	mu    sync.Mutex // guards m and fails; held for map work only
	m     map[string]*record
	fails int
}

// sweepEvery is how many failures pass between sweeps of stale keys, so a
// flood from ever-new keys cannot grow the map without bound.
const sweepEvery = 1024

type record struct {
	failures int
	last     time.Time // last failure
	until    time.Time // locked until
}

// New returns a throttle with policy p.
func New(p Policy) *Throttle { return &Throttle{p: p, m: map[string]*record{}} }

// Locked reports how much longer key is locked at now (0: not locked).
func (t *Throttle) Locked(key string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.get(key, now)
	if r == nil || !now.Before(r.until) {
		return 0
	}
	return r.until.Sub(now)
}

// Fail records a failure of key at now and returns the lockout it starts
// (0 while the key still has free failures).
func (t *Throttle) Fail(key string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fails++; t.fails%sweepEvery == 0 {
		t.sweep(now)
	}
	r := t.get(key, now)
	if r == nil {
		r = &record{}
		t.m[key] = r
	}
	r.failures++
	r.last = now
	over := r.failures - t.p.Free
	if over <= 0 {
		return 0
	}
	d := t.p.Base << min(over-1, 30)
	if d > t.p.Max || d <= 0 {
		d = t.p.Max
	}
	r.until = now.Add(d)
	return d
}

// Succeed forgets key: its owner proved who they are.
func (t *Throttle) Succeed(key string) {
	t.mu.Lock()
	delete(t.m, key)
	t.mu.Unlock()
}

// Sweep forgets every key with no failure for the reset period.
func (t *Throttle) Sweep(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweep(now)
}

func (t *Throttle) sweep(now time.Time) {
	for k, r := range t.m {
		if t.stale(r, now) {
			delete(t.m, k)
		}
	}
}

// Len is the number of keys remembered.
func (t *Throttle) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// get returns key's record, forgetting it first if it is stale. Called with
// mu held.
func (t *Throttle) get(key string, now time.Time) *record {
	r := t.m[key]
	if r != nil && t.stale(r, now) {
		delete(t.m, key)
		return nil
	}
	return r
}

func (t *Throttle) stale(r *record, now time.Time) bool {
	return now.Sub(r.last) >= t.p.Reset && !now.Before(r.until)
}

// Network is the network an address belongs to, for keys: its /24 for IPv4,
// its /64 for IPv6, so an attacker does not get a fresh key per address.
// addr may carry a port; an address that does not parse is its own network.
func Network(addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	bits := 64
	if ip.Is4() {
		bits = 24
	}
	p, _ := ip.Prefix(bits)
	return p.String()
}
