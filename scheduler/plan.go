package scheduler

import (
	"math/rand/v2"
	"time"

	"outpost/protocol"
)

// Tuning of Plan.
const (
	// Jitter is the fraction by which each interval is randomly lengthened or
	// shortened, so a fleet that booted together drifts apart.
	Jitter = 0.1
	// StartSpread bounds the random delay before the first exchange.
	StartSpread = 10 * time.Second
	// MaxBackoff caps the delay after failed exchanges.
	MaxBackoff  = 5 * time.Minute
	baseBackoff = 2 * time.Second
)

var kinds = [...]protocol.Include{protocol.IncludePing, protocol.IncludeSnapshot, protocol.IncludeCommands}

// Plan schedules an async agent's exchanges. Each kind (ping, snapshot,
// command pull) has its own frequency; kinds that fall due close together are
// merged into one exchange, never delayed.
type Plan struct {
	rnd      *rand.Rand
	freq     [3]time.Duration
	next     [3]time.Time
	failures int
	retryAt  time.Time
}

// NewPlan starts a plan at now: every kind is due at once after a random delay
// of up to StartSpread (or the shortest frequency, if smaller).
func NewPlan(f protocol.Frequencies, now time.Time, rnd *rand.Rand) *Plan {
	p := &Plan{rnd: rnd}
	p.setFreq(f)
	spread := min(StartSpread, p.shortest())
	first := now.Add(time.Duration(rnd.Int64N(int64(spread) + 1)))
	for i := range p.next {
		p.next[i] = first
	}
	return p
}

func (p *Plan) setFreq(f protocol.Frequencies) {
	for i, s := range [3]uint32{f.Ping, f.Snapshot, f.Command} {
		p.freq[i] = time.Duration(max(s, MinFrequency)) * time.Second
	}
}

func (p *Plan) shortest() time.Duration { return min(p.freq[0], p.freq[1], p.freq[2]) }

// window is how far ahead a due kind is pulled into an earlier exchange.
// Half the shortest (jittered) interval: a kind due nearer this exchange than
// the next one is better sent now than in an exchange of its own.
func (p *Plan) window() time.Duration {
	return time.Duration(float64(p.shortest()) * (0.5 + Jitter))
}

// Next returns when the next exchange is due and what it carries.
func (p *Plan) Next() (time.Time, protocol.Include) {
	if !p.retryAt.IsZero() {
		return p.retryAt, p.dueBy(p.retryAt.Add(p.window()))
	}
	at := p.next[0]
	for _, t := range p.next[1:] {
		if t.Before(at) {
			at = t
		}
	}
	return at, p.dueBy(at.Add(p.window()))
}

func (p *Plan) dueBy(t time.Time) protocol.Include {
	var inc protocol.Include
	for i, k := range kinds {
		if !p.next[i].After(t) {
			inc |= k
		}
	}
	return inc
}

// Done records a successful exchange at now. inc is what Next asked it to
// carry, whether or not it did: a kind the exchange left out (nothing
// changed, a standard agent's snapshot, a device still waiting) has been
// served all the same. No slot stays due after Done: one the exchange did not
// cover rides with the next exchange instead of calling again at once.
func (p *Plan) Done(inc protocol.Include, now time.Time) {
	p.failures, p.retryAt = 0, time.Time{}
	// One jitter draw for every kind sent together, so kinds that share a
	// frequency stay in step instead of drifting into separate exchanges.
	j := p.jitter()
	var soonest time.Time
	for i, k := range kinds {
		if inc&k != 0 {
			p.next[i] = now.Add(time.Duration(float64(p.freq[i]) * j))
			if soonest.IsZero() || p.next[i].Before(soonest) {
				soonest = p.next[i]
			}
		}
	}
	for i := range p.next {
		if p.next[i].After(now) {
			continue
		}
		if soonest.IsZero() {
			p.next[i] = now.Add(time.Duration(float64(p.freq[i]) * j))
		} else {
			p.next[i] = soonest
		}
	}
}

// Pause holds every exchange back until now+d, without counting a failure:
// the server asked this device to slow down. The kinds due stay due.
func (p *Plan) Pause(now time.Time, d time.Duration) {
	p.retryAt = now.Add(d + time.Duration(p.rnd.Int64N(int64(d)/10+1)))
}

// Failed records a failed exchange at now: the same kinds are retried after a
// full-jitter exponential backoff, never later than the kind's own frequency
// would have made it anyway and never later than MaxBackoff.
func (p *Plan) Failed(now time.Time) {
	p.failures++
	ceil := baseBackoff << min(p.failures, 16)
	ceil = min(ceil, MaxBackoff, max(p.shortest(), baseBackoff))
	p.retryAt = now.Add(time.Duration(p.rnd.Int64N(int64(ceil)) + 1))
}

// SetFrequencies applies frequencies the server sent. A kind whose interval
// shrank is brought forward so the change takes effect within one new interval.
func (p *Plan) SetFrequencies(f protocol.Frequencies, now time.Time) {
	old := p.freq
	p.setFreq(f)
	for i := range p.next {
		if p.freq[i] < old[i] {
			if limit := now.Add(time.Duration(float64(p.freq[i]) * p.jitter())); p.next[i].After(limit) {
				p.next[i] = limit
			}
		}
	}
}

// SnapshotNow makes the snapshot kind due at now (the server asked for one).
func (p *Plan) SnapshotNow(now time.Time) { p.next[1] = now }

// jitter returns a random factor in [1-Jitter, 1+Jitter).
func (p *Plan) jitter() float64 { return 1 + (p.rnd.Float64()*2-1)*Jitter }
