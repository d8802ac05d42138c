package protocol

// Version is the protocol version this build speaks; MinVersion the oldest it
// still accepts.
const (
	// Version 2: a pre-staged environment's edge key carries an enrollment
	// secret and the first contact proves it (Proof.Enroll). A version 1
	// agent already bound keeps working; it cannot bind a new environment.
	Version    = 2
	MinVersion = 1
)

// Include says what a sync request asks for or carries. Ticks that fall due
// together are merged into one request with several bits set.
type Include uint8

// Include bits.
const (
	IncludePing     Include = 1 << iota // a check-in
	IncludeSnapshot                     // Snapshot is set
	IncludeCommands                     // pull pending commands
)

// SyncRequest is what an async agent posts to /edge/v1/sync on each tick.
type SyncRequest struct {
	Version uint    `cbor:"1,keyasint"`
	EdgeID  string  `cbor:"2,keyasint,omitempty"` // sent until the server has bound it
	EnvID   uint64  `cbor:"3,keyasint,omitempty"` // 0 = not yet known (onboarding key)
	Proof   *Proof  `cbor:"4,keyasint,omitempty"`
	Include Include `cbor:"5,keyasint,omitempty"`
	// Agent describes the device; sent on first contact and when it changes.
	Agent         *AgentInfo    `cbor:"6,keyasint,omitempty"`
	Snapshot      *SnapshotPush `cbor:"7,keyasint,omitempty"`
	Acks          []CommandAck  `cbor:"8,keyasint,omitempty"`
	StackStatuses []StackStatus `cbor:"9,keyasint,omitempty"`
	JobResults    []JobResult   `cbor:"10,keyasint,omitempty"`
	// Resync echoes the nonce of the answer that asked for it (SyncAnswer.Resync).
	Resync []byte `cbor:"11,keyasint,omitempty"`
}

// Proof proves the request comes from the device holding the identity key the
// environment is bound to. See proof.go for what Tag covers.
//
// On first contact (the environment not yet bound, or the agent not yet
// holding the server's key agreement key) Key and DH are set and Tag is an
// Ed25519 signature by Key. Afterwards only Counter and Tag travel, Tag being
// a MACSize-byte MAC under the key both sides derive from DH.
type Proof struct {
	Key     []byte `cbor:"1,keyasint,omitempty"` // Ed25519 public key, first contact only
	Counter uint64 `cbor:"2,keyasint,omitempty"` // strictly increasing per device: replays are refused
	Tag     []byte `cbor:"3,keyasint,omitempty"` // signature or MAC over the request (proof.go)
	DH      []byte `cbor:"4,keyasint,omitempty"` // X25519 public key, first contact only
	// Enroll is the first contact's MAC under the enrollment key of the
	// edge key's secret (EnrollKey), over the same bytes as Tag: it proves
	// the device was given this environment's key. Onboarding and later
	// requests leave it out.
	Enroll []byte `cbor:"5,keyasint,omitempty"`
}

// AgentInfo describes the agent and its host.
type AgentInfo struct {
	Version  string   `cbor:"1,keyasint,omitempty" json:"version,omitempty"`
	Hostname string   `cbor:"2,keyasint,omitempty" json:"hostname,omitempty"`
	Platform string   `cbor:"3,keyasint,omitempty" json:"platform,omitempty"` // docker, kubernetes
	OS       string   `cbor:"4,keyasint,omitempty" json:"os,omitempty"`
	Arch     string   `cbor:"5,keyasint,omitempty" json:"arch,omitempty"`
	Groups   []string `cbor:"6,keyasint,omitempty" json:"groups,omitempty"` // EDGE_GROUPS
	Tags     []string `cbor:"7,keyasint,omitempty" json:"tags,omitempty"`   // EDGE_TAGS
}

// SnapshotPush carries a full snapshot (Base 0) or a delta from Base to Seq.
// Data is the CBOR of package snapshot's Docker or Delta. Hash is the leading
// bytes of the canonical hash of the snapshot at Seq, so the server can check
// what it rebuilt.
type SnapshotPush struct {
	Seq  uint64     `cbor:"1,keyasint"`
	Base uint64     `cbor:"2,keyasint,omitempty"`
	Hash []byte     `cbor:"3,keyasint,omitempty"`
	Data RawMessage `cbor:"4,keyasint,omitempty"`
}

// IsDelta reports whether the push carries a delta rather than a full snapshot.
func (p *SnapshotPush) IsDelta() bool { return p.Base != 0 }

// CommandAck reports the outcome of one command.
type CommandAck struct {
	ID       uint64 `cbor:"1,keyasint"`
	Status   Status `cbor:"2,keyasint,omitempty"`
	Error    string `cbor:"3,keyasint,omitempty"`
	Finished int64  `cbor:"4,keyasint,omitempty"`
}

// Status is the outcome of a command or the state of a stack on a device.
type Status uint8

// Statuses.
const (
	StatusUnknown Status = iota
	StatusOK
	StatusFailed
	StatusAcknowledged
	StatusDeploying
	StatusRunning
	StatusRemoving
	StatusRemoved
)

// StackStatus reports one edge stack on the device.
type StackStatus struct {
	StackID uint64 `cbor:"1,keyasint"`
	Version uint64 `cbor:"2,keyasint,omitempty"`
	Status  Status `cbor:"3,keyasint,omitempty"`
	Error   string `cbor:"4,keyasint,omitempty"`
	Time    int64  `cbor:"5,keyasint,omitempty"`
}

// JobResult reports one run of an edge job.
type JobResult struct {
	JobID    uint64 `cbor:"1,keyasint"`
	Run      uint64 `cbor:"2,keyasint,omitempty"`
	Started  int64  `cbor:"3,keyasint,omitempty"`
	Duration uint32 `cbor:"4,keyasint,omitempty"` // milliseconds
	ExitCode int    `cbor:"5,keyasint,omitempty"`
	Output   []byte `cbor:"6,keyasint,omitempty"` // tail, bounded by the agent; the whole log when Full
	Error    string `cbor:"7,keyasint,omitempty"` // why the script could not run, or was killed
	Full     bool   `cbor:"8,keyasint,omitempty"` // Output is the run's whole log (job.collect)
}

// Trust is an environment's trust state as the server tells the agent.
type Trust uint8

// Trust states.
const (
	TrustUnknown Trust = iota
	TrustTrusted
	TrustWaiting  // in the waiting room
	TrustRejected // refused for good
)

// Frequencies are an async environment's effective frequencies, in seconds.
// A map like every other message, so a later version can add one.
type Frequencies struct {
	Ping     uint32 `cbor:"1,keyasint,omitempty" json:"ping"`
	Snapshot uint32 `cbor:"2,keyasint,omitempty" json:"snapshot"`
	Command  uint32 `cbor:"3,keyasint,omitempty" json:"command"`
}

// SyncAnswer is the server's answer to a SyncRequest.
type SyncAnswer struct {
	Version  uint         `cbor:"1,keyasint"`
	EnvID    uint64       `cbor:"2,keyasint,omitempty"`
	Trust    Trust        `cbor:"3,keyasint,omitempty"`
	Freq     *Frequencies `cbor:"4,keyasint,omitempty"`
	Snapshot *SnapshotAck `cbor:"5,keyasint,omitempty"`
	Commands []Command    `cbor:"6,keyasint,omitempty"`
	Blobs    []Blob       `cbor:"7,keyasint,omitempty"`
	// Server answers a first contact with its key agreement key.
	Server *ServerKey `cbor:"8,keyasint,omitempty"`
	// Tag authenticates the answer to the device (proof.go SealAnswer): the
	// agent acts on no answer whose tag does not verify.
	Tag []byte `cbor:"9,keyasint,omitempty"`
	// Tunnel answers a standard agent's poll (poll.go).
	Tunnel TunnelStatus `cbor:"10,keyasint,omitempty"`
	// Mode is set when the device called the other mode's endpoint: an
	// operator changed the environment's mode, and the device switches.
	Mode Mode `cbor:"11,keyasint,omitempty"`
	// Resync is set when the server's store was restored from a backup:
	// the request was not served (its counter, under the restored floor,
	// proves nothing), and the device asks again at once, echoing this.
	Resync []byte `cbor:"12,keyasint,omitempty"`
}

// Mode is how an agent talks to the server.
type Mode uint8

// Modes.
const (
	ModeUnset    Mode = iota
	ModeAsync         // one /edge/v1/sync per tick, no tunnel
	ModeStandard      // /edge/v1/poll at the poll interval, tunnel on demand
)

// ServerKey is the server's X25519 key agreement key, signed by its tunnel
// host key: the agent checks HostKey against the fingerprint in its edge key,
// then Sig over ServerKeyMessage(DH), before it derives its MAC key.
type ServerKey struct {
	DH      []byte `cbor:"1,keyasint"`
	HostKey []byte `cbor:"2,keyasint"` // SSH wire format
	Sig     []byte `cbor:"3,keyasint"` // SSH signature, wire format
}

// SnapshotAck tells the agent which snapshot the server holds. SendFull asks
// for a full snapshot next time (the server lost the base, or a delta did not
// rebuild to its hash).
type SnapshotAck struct {
	Stored   uint64 `cbor:"1,keyasint,omitempty"`
	SendFull bool   `cbor:"2,keyasint,omitempty"`
}

// Command is one entry of an environment's command log.
type Command struct {
	ID   uint64            `cbor:"1,keyasint"`
	Kind string            `cbor:"2,keyasint"`
	Args map[string]string `cbor:"3,keyasint,omitempty"`
	Blob []byte            `cbor:"4,keyasint,omitempty"` // hash of content in Blobs or already sent
	// Secret is what the command needs and no log may hold (registry
	// credentials), sealed for the device (secret.go). The server seals it
	// when it releases the command; its command history never has it.
	Secret []byte `cbor:"5,keyasint,omitempty"`
}

// Blob is content a command references, sent once by hash.
type Blob struct {
	Hash []byte `cbor:"1,keyasint"`
	Data []byte `cbor:"2,keyasint"`
}

// Error is the body of every refused edge request.
type Error struct {
	Version uint   `cbor:"1,keyasint"`
	Code    string `cbor:"2,keyasint"`
	Message string `cbor:"3,keyasint,omitempty"`
	// RetryAfter, in seconds, is how long the device should wait before it
	// calls again (slow_down); 0 leaves it to the device's own backoff.
	RetryAfter uint32 `cbor:"4,keyasint,omitempty"`
}

// Error codes.
const (
	CodeUnsupportedVersion = "unsupported_version"
	CodeMalformed          = "malformed"
	CodeLimit              = "limit"
	CodeUnknownEnvironment = "unknown_environment"
	CodeIdentity           = "identity_refused"
	CodeRejected           = "rejected"          // an operator rejected this device
	CodeWaitingRoomFull    = "waiting_room_full" // retry later
	CodeSlowDown           = "slow_down"         // calling too fast, or too many new devices from this address; wait RetryAfter
	CodeInternal           = "internal"
)

func (e *Error) Error() string { return "server refused: " + e.Code + ": " + e.Message }

// CheckVersion returns a *VersionError when v is not spoken here.
func CheckVersion(v uint) error {
	if v < MinVersion || v > Version {
		return &VersionError{Got: v}
	}
	return nil
}
