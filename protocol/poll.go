package protocol

// Poll: a standard agent posts to /edge/v1/poll at its poll interval
// (Frequencies.Ping, 5 s by default) the same request an async agent posts
// to /edge/v1/sync, with IncludePing|IncludeCommands (and IncludeSnapshot on
// first contact), and gets the same answer plus Tunnel. Stack versions and
// job schedules reach it as commands, once, like everything else the device
// already has: an idle poll answer carries its trust, frequencies and tag.
type (
	PollRequest = SyncRequest
	PollAnswer  = SyncAnswer
)

// TunnelStatus tells a standard agent whether to open its reverse tunnel.
type TunnelStatus uint8

// Tunnel states.
const (
	TunnelIdle     TunnelStatus = iota // no tunnel wanted
	TunnelRequired                     // open it now
	TunnelActive                       // the server holds it
)
