package scheduler

import (
	"math/rand/v2"
	"testing"
	"time"

	"outpost/protocol"
)

// Random mixes of Done (carrying what Next asked, or less),
// Failed, Pause, SetFrequencies (incl. 0), SnapshotNow and clock jumps
// both ways: no run of more than 3 exchanges at the same instant.
func TestPlanNeverSticks(t *testing.T) {
	rnd := rand.New(rand.NewPCG(11, 12))
	fr := func() protocol.Frequencies {
		return protocol.Frequencies{Ping: rnd.Uint32N(4000), Snapshot: rnd.Uint32N(4000), Command: rnd.Uint32N(4000)}
	}
	for run := range 2000 {
		now := time.Unix(1_700_000_000, 0)
		p := NewPlan(fr(), now, rnd)
		same := 0
		var last time.Time
		for step := range 500 {
			at, inc := p.Next()
			if at.After(now) {
				now = at
			}
			if now.Equal(last) {
				if same++; same > 3 {
					t.Fatalf("run %d step %d: %d exchanges at %v (freq %v)", run, step, same, now, p.freq)
				}
			} else {
				same = 0
			}
			last = now
			switch r := rnd.IntN(20); {
			case r == 0:
				p.Failed(now)
			case r == 1:
				p.Pause(now, time.Duration(1+rnd.IntN(900))*time.Second)
			case r == 2:
				now = now.Add(-time.Duration(rnd.Int64N(int64(2 * time.Hour)))) // clock back
				p.Done(inc, now)
			case r == 3:
				now = now.Add(time.Duration(rnd.Int64N(int64(48 * time.Hour)))) // clock forward
				p.Done(inc, now)
			default:
				p.Done(inc&protocol.Include(rnd.UintN(8)), now)
			}
			if rnd.IntN(10) == 0 {
				p.SetFrequencies(fr(), now)
			}
			if rnd.IntN(50) == 0 {
				p.SnapshotNow(now)
			}
		}
	}
}
