// Package usage counts what each device's exchanges cost on the wire, per
// day: the bytes of its requests and answers as sent, and an estimate of
// what HTTP and TLS add to each exchange.
package usage

import (
	"sync"
	"time"
)

// Overhead is the estimate of what one exchange on a kept connection adds to
// its two bodies: HTTP/1.1 request and answer headers and TLS record
// framing, both ways. Measured on the socket with Go 1.26 (a 30-byte request
// body and a 20-byte answer took about 230 bytes in all). A new connection's
// handshake (1 to 3.6 KB) is not in it: the server does not see which
// exchange opened its connection.
const Overhead = 180

// Days is how many days of usage are kept.
const Days = 31

// Day is one device's use of one day, in bytes and exchanges.
type Day struct {
	In        uint64 `cbor:"1,keyasint,omitempty"` // request bodies as sent
	Out       uint64 `cbor:"2,keyasint,omitempty"` // answer bodies as sent
	Exchanges uint64 `cbor:"3,keyasint,omitempty"`
}

// Total is the day's bytes with the estimated overhead of its exchanges.
func (d Day) Total() uint64 { return d.In + d.Out + d.Exchanges*Overhead }

// Add sums two counts.
func (d Day) Add(o Day) Day {
	return Day{In: d.In + o.In, Out: d.Out + o.Out, Exchanges: d.Exchanges + o.Exchanges}
}

// Key names one device's day: the environment and the day number (days
// since 1970-01-01, UTC).
type Key struct {
	Env uint64
	Day int64
}

// DayOf is t's day number.
func DayOf(t time.Time) int64 { return t.Unix() / 86400 }

// Date is day's midnight, UTC.
func Date(day int64) time.Time { return time.Unix(day*86400, 0).UTC() }

// Meter gathers counts in memory until they are taken to be stored.
type Meter struct {
	mu sync.Mutex
	m  map[Key]Day
}

// Add counts one exchange of env at t: in bytes of request, out of answer.
func (m *Meter) Add(env uint64, t time.Time, in, out int) {
	k := Key{Env: env, Day: DayOf(t)}
	m.mu.Lock()
	if m.m == nil {
		m.m = map[Key]Day{}
	}
	m.m[k] = m.m[k].Add(Day{In: uint64(max(in, 0)), Out: uint64(max(out, 0)), Exchanges: 1})
	m.mu.Unlock()
}

// Take hands the counts gathered so far to the caller and starts afresh.
func (m *Meter) Take() map[Key]Day {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.m
	m.m = nil
	return d
}

// PutBack returns counts Take gave that could not be stored.
func (m *Meter) PutBack(d map[Key]Day) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[Key]Day{}
	}
	for k, v := range d {
		m.m[k] = m.m[k].Add(v)
	}
}

// Pending is what has not been taken yet for key: the store's count plus
// this is the live one.
func (m *Meter) Pending(k Key) Day {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m[k]
}
