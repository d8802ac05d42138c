package sim

import (
	"fmt"
	"math/rand/v2"
	"time"

	"outpost/internal/corpus"
	"outpost/snapshot"
)

// content is what a device's engine holds: a real capture with container
// names, IDs and the hostname made its own, whose containers stop and start
// at random at the configured rate.
type content struct {
	cur *snapshot.Snapshot
	// version counts cur's changes.
	version int
	// nextChange is when the next container changes state; zero for never.
	nextChange time.Time
	// every is the mean time between changes.
	every time.Duration
}

// newContent is device n's engine: capture c made its own.
func newContent(c *snapshot.Snapshot, n int, perHour float64, now time.Time, rnd *rand.Rand) *content {
	d := corpus.Clone(c)
	d.Engine.Hostname = fmt.Sprintf("sim-%d", n)
	suffix := fmt.Sprintf("%06x", n&0xffffff)
	for i := range d.Containers {
		ct := &d.Containers[i]
		if len(ct.ID) > 6 {
			ct.ID = ct.ID[:len(ct.ID)-6] + suffix
		} else {
			ct.ID += suffix
		}
		ct.Name = fmt.Sprintf("%s-d%d", ct.Name, n)
	}
	snapshot.Normalize(d)
	ct := &content{cur: d}
	if rate := perHour * float64(len(d.Containers)); rate > 0 {
		ct.every = time.Duration(float64(time.Hour) / rate)
		ct.schedule(now, rnd)
	}
	return ct
}

// schedule draws the next change: changes come as a Poisson process.
func (ct *content) schedule(now time.Time, rnd *rand.Rand) {
	ct.nextChange = now.Add(time.Duration(rnd.ExpFloat64() * float64(ct.every)))
}

// advance applies the changes due by now, and says how many.
func (ct *content) advance(now time.Time, rnd *rand.Rand) int {
	n := 0
	for !ct.nextChange.IsZero() && !ct.nextChange.After(now) && len(ct.cur.Containers) > 0 {
		c := &ct.cur.Containers[rnd.IntN(len(ct.cur.Containers))]
		at := ct.nextChange.Unix()
		if c.State == snapshot.StateRunning {
			c.State, c.ExitCode, c.Finished, c.Health = snapshot.StateExited, 137, at, snapshot.HealthNone
		} else {
			c.State, c.ExitCode, c.Started, c.Finished = snapshot.StateRunning, 0, at, 0
		}
		ct.version++
		n++
		ct.schedule(ct.nextChange, rnd)
	}
	return n
}
