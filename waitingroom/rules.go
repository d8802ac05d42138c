package waitingroom

import (
	"slices"
	"strings"

	"outpost/throttle"
)

// Rules is the onboarding policy, from the server's edge settings.
type Rules struct {
	TrustOnFirstConnect bool
	// PreauthorizedEdgeIDs name devices by edge ID together with their key
	// fingerprint, "EDGE_ID SHA256:...": an edge ID alone is a claim any
	// device can make, so it trusts nobody.
	PreauthorizedEdgeIDs []string
	PreauthorizedKeys    []string // "SHA256:..." fingerprints of device identity keys
	Max                  int      // waiting room size
	PerMinute            int      // new devices per source address and minute
	PerNetwork           int      // new devices per source network (/24, /64) and minute
	Total                int      // new devices per minute, from everywhere
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
// address, waiting the room's current size.
//
// A device a preauthorization names by its key is trusted whatever else
// arrives: a flood cannot make its key, so it neither waits for the rate
// limits nor for room. Every other new device goes through the limits, per
// address, per network (/24 for IPv4, /64 for IPv6, since one host has a
// whole /64) and in all, so a flood from many addresses slows down too and
// cannot mint trusted environments under trust on first connect.
func Decide(r Rules, l *Limiter, edgeID, keyFP, source string, waiting int) Decision {
	if PreauthorizedPair(r.PreauthorizedEdgeIDs, edgeID, keyFP) || slices.Contains(r.PreauthorizedKeys, keyFP) {
		return Trust
	}
	if !l.Allow("address "+source, r.PerMinute) || !l.Allow("network "+throttle.Network(source), r.PerNetwork) || !l.Allow("all", r.Total) {
		return SlowDown
	}
	if r.TrustOnFirstConnect {
		return Trust
	}
	if waiting >= r.Max {
		return Full
	}
	return Wait
}

// SplitPreauthorized splits a preauthorized edge ID entry into its edge ID
// and key fingerprint, at its last space; ok is false for an entry without
// a "SHA256:" fingerprint (the fingerprint's form is the caller's to check).
func SplitPreauthorized(entry string) (edgeID, keyFP string, ok bool) {
	i := strings.LastIndexByte(entry, ' ')
	if i <= 0 || !strings.HasPrefix(entry[i+1:], "SHA256:") {
		return "", "", false
	}
	return strings.TrimSpace(entry[:i]), entry[i+1:], true
}

// PreauthorizedPair reports whether entries name the device with edgeID and
// key fingerprint keyFP, both.
func PreauthorizedPair(entries []string, edgeID, keyFP string) bool {
	return slices.ContainsFunc(entries, func(e string) bool {
		id, fp, ok := SplitPreauthorized(e)
		return ok && id == edgeID && fp == keyFP
	})
}
