package protocol

// TunnelStatus tells a standard agent whether to open its reverse tunnel.
type TunnelStatus uint8

// Tunnel states.
const (
	TunnelIdle TunnelStatus = iota
	TunnelRequired
	TunnelActive
)

// PollRequest is what a standard agent posts to /edge/v1/poll.
type PollRequest struct {
	Version uint       `cbor:"1,keyasint"`
	EdgeID  string     `cbor:"2,keyasint,omitempty"`
	EnvID   uint64     `cbor:"3,keyasint,omitempty"`
	Proof   *Proof     `cbor:"4,keyasint,omitempty"`
	Agent   *AgentInfo `cbor:"5,keyasint,omitempty"`
	// Known lets the server leave out what the agent already has.
	StateSeq uint64       `cbor:"6,keyasint,omitempty"`
	Acks     []CommandAck `cbor:"7,keyasint,omitempty"`
}

// PollAnswer is the server's answer to a PollRequest. Fields the agent already
// has (per StateSeq) are left out.
type PollAnswer struct {
	Version  uint          `cbor:"1,keyasint"`
	EnvID    uint64        `cbor:"2,keyasint,omitempty"`
	Trust    Trust         `cbor:"3,keyasint,omitempty"`
	Tunnel   TunnelStatus  `cbor:"4,keyasint,omitempty"`
	Interval uint32        `cbor:"5,keyasint,omitempty"` // seconds
	StateSeq uint64        `cbor:"6,keyasint,omitempty"`
	Stacks   []StackRef    `cbor:"7,keyasint,omitempty"`
	Jobs     []JobSchedule `cbor:"8,keyasint,omitempty"`
	Commands []Command     `cbor:"9,keyasint,omitempty"`
}

// StackRef names an edge stack version the device should run.
type StackRef struct {
	ID      uint64 `cbor:"1,keyasint"`
	Version uint64 `cbor:"2,keyasint"`
}

// JobSchedule is an edge job's schedule as the device should run it.
type JobSchedule struct {
	ID      uint64 `cbor:"1,keyasint"`
	Cron    string `cbor:"2,keyasint"`
	Version uint64 `cbor:"3,keyasint,omitempty"`
	Script  []byte `cbor:"4,keyasint,omitempty"` // hash of the script blob
	Collect bool   `cbor:"5,keyasint,omitempty"`
}
