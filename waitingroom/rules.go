package waitingroom

import "slices"

// Rules is the onboarding policy, from the server's edge settings.
type Rules struct {
	TrustOnFirstConnect  bool
	PreauthorizedEdgeIDs []string
	PreauthorizedKeys    []string // "SHA256:..." fingerprints of device identity keys
	Max                  int      // waiting room size
	PerMinute            int      // new devices per source address and minute
}

// Decision is what to do with a new device.
type Decision int

// Decisions.
const (
	Wait     Decision = iota // hold it for an operator
	Trust                    // a rule trusts it: make it an environment now
	Full                     // the room is full: refuse, ask to retry later
	SlowDown                 // its source sent too many new devices: refuse for now
)

func (d Decision) String() string {
	return [...]string{"wait", "trust", "full", "slow down"}[d]
}

// Decide places a new device: edgeID and keyFP identify it, source is its
// address, waiting the room's current size. The rate limit applies to every
// new device, so a flood cannot mint trusted environments either.
func Decide(r Rules, l *Limiter, edgeID, keyFP, source string, waiting int) Decision {
	if !l.Allow(source, r.PerMinute) {
		return SlowDown
	}
	if r.TrustOnFirstConnect || slices.Contains(r.PreauthorizedEdgeIDs, edgeID) || slices.Contains(r.PreauthorizedKeys, keyFP) {
		return Trust
	}
	if waiting >= r.Max {
		return Full
	}
	return Wait
}
