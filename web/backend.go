package web

import (
	"strings"
	"time"
)

// Action is what a page or form asks the user's role for. The server maps
// each to the permission its API requires for the same thing, so the UI and
// the API grant the same.
type Action string

const (
	// ActWrite: trust and reject devices, change and delete environments,
	// queue commands, see and rotate the onboarding key (as the API's
	// environments:write).
	ActWrite Action = "write"
	// ActSettings: change the onboarding rules.
	ActSettings Action = "settings"
)

// EnvQuery selects a page of environments; the zero value is the first page
// of all, by ID.
type EnvQuery struct {
	Name   string // substring of the name, any case
	Status string // online, offline, never; "" for any
	Mode   string // async, standard; "" for any
	Tag    uint64 // 0 for any
	Group  uint64 // environment group, 0 for any
	Sort   string // id, name, lastCheckIn
	Desc   bool
	Limit  int
	Offset int
}

// EnvPage is one page of environments with the number matching the query
// and the whole fleet's count per status.
type EnvPage struct {
	Items  []Environment
	Total  int
	Counts map[string]int // online, offline, never, over every environment
}

// Option is a tag, edge group or environment group as a form offers it.
type Option struct {
	ID      uint64
	Name    string
	Dynamic bool // an edge group whose members come from tags: nobody is added to it by hand
}

// WaitingQuery selects a page of the waiting room.
type WaitingQuery struct {
	Q      string // substring of the edge ID, hostname, key fingerprint or source
	Sort   string // firstSeen, lastSeen, hostname, edgeId
	Desc   bool
	Limit  int
	Offset int
}

// WaitingDevice is one untrusted device in the waiting room.
type WaitingDevice struct {
	ID           uint64
	EdgeID       string
	Fingerprint  string
	Hostname     string
	AgentVersion string
	Platform     string // docker, ... and the OS/arch
	Mode         string // async or standard: the endpoint it calls
	Groups, Tags []string
	Source       string
	FirstSeen    time.Time
	LastSeen     time.Time
	// BoundTo is the environment already bound to the device's edge ID
	// under another key (a re-flashed device or a copied edge ID), 0 when
	// none; BoundName its name.
	BoundTo   uint64
	BoundName string
}

// WaitingPage is one page of the waiting room and what the whole room
// looks like: its size against its cap, arrivals per minute over the last
// hour (oldest first), and the source networks most devices came from.
type WaitingPage struct {
	Items []WaitingDevice
	Total int // matching the query
	Room  int // waiting in all
	// Newest is the highest waiting device ID when the page was read:
	// "all that match" acts on those up to it, not on later arrivals.
	Newest   uint64
	Max      int // the room's cap
	Arrivals []int
	Networks []NetworkCount
}

// NetworkCount is how many waiting devices came from one source network.
type NetworkCount struct {
	Network string
	N       int
}

// WaitingResult is what became of one device an operator trusted or
// rejected.
type WaitingResult struct {
	ID      uint64
	EdgeID  string
	EnvID   uint64 // the environment it became, when trusted
	EnvName string
	BoundTo uint64 // the environment that already had its edge ID; it keeps its own key
	Problem string // why it failed, or what part of it did
}

// Onboarding is the onboarding key, the line that starts an agent with it,
// and the rules that decide what happens to a device that calls with it.
type Onboarding struct {
	EdgeKey   string
	DockerRun string
	Rules     OnboardingRules
}

// OnboardingRules are the waiting room's settings.
type OnboardingRules struct {
	TrustOnFirstConnect  bool
	PreauthorizedEdgeIDs []string // "EDGE_ID SHA256:fingerprint"
	PreauthorizedKeys    []string // "SHA256:fingerprint"
	WaitingRoomMax       int
	PerSource            int // new devices per source address and minute
	PerNetwork           int // per /24 or /64 and minute
	Total                int // per minute from everywhere
	ExpirySeconds        int // how long a device that stops calling waits
}

// FormError is the Backend's refusal of what a form sent: every problem,
// worded for the form, and nothing changed.
type FormError struct{ Problems []string }

func (e *FormError) Error() string { return strings.Join(e.Problems, "; ") }

// Actor is the user an action is done for and the address of their browser,
// for the audit log.
type Actor struct {
	User   string
	Remote string
}

// WaitingRoom is the waiting room part of Backend.
type WaitingRoom interface {
	WaitingRoom(q WaitingQuery) (WaitingPage, error)
	// WaitingIDs returns every waiting device matching the search q, up to
	// ID upTo, so that devices which arrived after a page was read are left
	// out.
	WaitingIDs(q string, upTo uint64) ([]uint64, error)
	// Trust makes each device an environment, in the given edge groups
	// and with the given tags. Reject refuses them for good.
	Trust(a Actor, ids, edgeGroups, tags []uint64) ([]WaitingResult, error)
	Reject(a Actor, ids []uint64) ([]WaitingResult, error)
	Onboarding() (Onboarding, error)
	// SetOnboardingRules returns a *FormError when the rules are refused.
	SetOnboardingRules(a Actor, r OnboardingRules) error
	RotateOnboardingKey(a Actor) error
}

// Command is one operation queued for a device, and what became of it.
type Command struct {
	ID       uint64
	Kind     string // container.stop, image.remove, snapshot.now, ...
	Target   string // the container, image or volume it acts on
	Status   string // pending, ok, failed
	Error    string
	By       string
	Created  time.Time
	Finished time.Time // when the device ran it
}

// CommandLog is what waits for a device and what it ran, newest first, and
// when it is expected to pull commands next: its last check-in plus its
// command frequency.
type CommandLog struct {
	Pending  []Command
	Results  []Command
	NextPull time.Time // zero when it never checked in
}

// Commands is the command part of Backend.
type Commands interface {
	// QueueCommand checks and queues kind with args for environment env,
	// returning its ID; a *FormError when it is refused.
	QueueCommand(a Actor, env uint64, kind string, args map[string]string) (uint64, error)
	CommandLog(env uint64) (CommandLog, error)
}

// NewEnvironment is what the add-environment form sends. A frequency of 0
// is the server's default for the mode.
type NewEnvironment struct {
	Name                    string
	Mode                    string // async or standard
	Platform                string // docker or kubernetes
	Ping, Snapshot, Command uint32 // seconds
	Tags                    []uint64
	Group                   uint64 // environment group, 0 for none
}

// CreatedEnvironment is a pre-staged environment and the one showing of its
// edge key with its enrollment secret.
type CreatedEnvironment struct {
	ID        uint64
	Name      string
	Mode      string
	EdgeKey   string
	DockerRun string
	// KubernetesManifest installs the agent in a cluster, for a
	// Kubernetes environment (which has no DockerRun).
	KubernetesManifest string
	Warnings           []string // a public URL devices cannot reach, say
}

// EnvUpdate is what the edit form sends: the whole of what it edits.
type EnvUpdate struct {
	Name                    string
	Ping, Snapshot, Command uint32
	Tags                    []uint64
	Group                   uint64
}

// DeleteImpact is what goes with an environment when it is deleted.
type DeleteImpact struct {
	EdgeID          string   // the device bound to it, refused from then on
	HistoryEntries  int      // snapshot pushes kept
	PendingCommands int      // queued and not yet run
	Stacks          []string // edge stacks it runs or is being given
}

// EnvironmentAdmin is the part of Backend that adds, changes and deletes
// environments. Refused input is a *FormError.
type EnvironmentAdmin interface {
	CreateEnvironment(a Actor, n NewEnvironment) (CreatedEnvironment, error)
	UpdateEnvironment(a Actor, id uint64, u EnvUpdate) error
	DeleteImpact(id uint64) (DeleteImpact, error)
	DeleteEnvironment(a Actor, id uint64) error
}

// UsageDay is what one device's exchanges cost on the wire in one day:
// bodies as sent, and the total with the estimated HTTP and TLS overhead.
type UsageDay struct {
	Day                time.Time // midnight UTC
	In, Out, Exchanges uint64
	Total              uint64
}

// UsageRow is one device's use over a span of days.
type UsageRow struct {
	EnvID     uint64
	Name      string
	Total     uint64
	Exchanges uint64
}

// DataUsage is the part of Backend that counts bytes on the wire.
type DataUsage interface {
	// Usage is environment env's last 30 days, oldest first, every day
	// there (0 when it made no exchange).
	Usage(env uint64) ([]UsageDay, error)
	// TopUsage is the n environments that used the most over the last
	// 7 days, most first.
	TopUsage(n int) ([]UsageRow, error)
}
