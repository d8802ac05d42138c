package scheduler

import "outpost/protocol"

// Defaults are the global frequencies of a fresh server, in seconds: a ping a
// minute, a snapshot every five, commands pulled every minute.
var Defaults = protocol.Frequencies{Ping: 60, Snapshot: 300, Command: 60}

// MinFrequency is the shortest accepted frequency, in seconds.
const MinFrequency = 1

// Effective returns the frequencies an environment runs with: each non-zero
// field of override wins over global, and global's zero fields fall back to
// Defaults.
func Effective(global protocol.Frequencies, override *protocol.Frequencies) protocol.Frequencies {
	f := global
	pick := func(dst *uint32, g, o uint32, def uint32) {
		switch {
		case o != 0:
			*dst = o
		case g != 0:
			*dst = g
		default:
			*dst = def
		}
	}
	var o protocol.Frequencies
	if override != nil {
		o = *override
	}
	pick(&f.Ping, global.Ping, o.Ping, Defaults.Ping)
	pick(&f.Snapshot, global.Snapshot, o.Snapshot, Defaults.Snapshot)
	pick(&f.Command, global.Command, o.Command, Defaults.Command)
	return f
}
