package server

import (
	"sync"
)

// checkins keeps each environment's last check-in in memory. The store gets
// them in one batch per flush, so a fleet's pings cost no write transaction
// each.
type checkins struct {
	mu    sync.Mutex // guards the maps; never held across a store call
	last  map[uint64]int64
	until map[uint64]int64 // online until (Unix seconds), from the device's own ping frequency
	dirty map[uint64]int64
}

func newCheckins() *checkins {
	return &checkins{last: map[uint64]int64{}, until: map[uint64]int64{}, dirty: map[uint64]int64{}}
}

// touch records a check-in at at; the device counts as online for onlineFor
// seconds after it.
func (c *checkins) touch(env uint64, at, onlineFor int64) {
	c.mu.Lock()
	c.last[env] = at
	c.until[env] = at + onlineFor
	c.dirty[env] = at
	c.mu.Unlock()
}

func (c *checkins) get(env uint64) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.last[env]
	return t, ok
}

// online counts devices whose online window covers now.
func (c *checkins) online(now int64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, u := range c.until {
		if u >= now {
			n++
		}
	}
	return n
}

// take returns and clears the check-ins not yet flushed.
func (c *checkins) take() map[uint64]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.dirty
	c.dirty = map[uint64]int64{}
	return d
}

// putBack returns check-ins whose flush failed, unless newer ones arrived.
func (c *checkins) putBack(d map[uint64]int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, t := range d {
		if cur, ok := c.dirty[id]; !ok || cur < t {
			c.dirty[id] = t
		}
	}
}
