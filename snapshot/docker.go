package snapshot

// Snapshot is what runs on one device: a Docker engine's engine facts,
// containers, images, volumes, networks and compose projects, or a
// Kubernetes cluster's resources (kube.go). A device fills the collections
// of its platform; the others stay empty and cost nothing on the wire.
type Snapshot struct {
	Engine     Engine      `cbor:"1,keyasint,omitempty" json:"engine"`
	Containers []Container `cbor:"2,keyasint,omitempty" json:"containers,omitempty"`
	Images     []Image     `cbor:"3,keyasint,omitempty" json:"images,omitempty"`
	Volumes    []Volume    `cbor:"4,keyasint,omitempty" json:"volumes,omitempty"`
	Networks   []Network   `cbor:"5,keyasint,omitempty" json:"networks,omitempty"`
	Projects   []Project   `cbor:"6,keyasint,omitempty" json:"projects,omitempty"`

	// Kubernetes, every collection keyed by the object's UID.
	Cluster    Cluster     `cbor:"7,keyasint,omitempty" json:"cluster,omitzero"`
	Nodes      []Node      `cbor:"8,keyasint,omitempty" json:"nodes,omitempty"`
	Namespaces []Namespace `cbor:"9,keyasint,omitempty" json:"namespaces,omitempty"`
	Workloads  []Workload  `cbor:"10,keyasint,omitempty" json:"workloads,omitempty"`
	Pods       []Pod       `cbor:"11,keyasint,omitempty" json:"pods,omitempty"`
	Services   []Service   `cbor:"12,keyasint,omitempty" json:"services,omitempty"`
	Ingresses  []Ingress   `cbor:"13,keyasint,omitempty" json:"ingresses,omitempty"`
	Claims     []Claim     `cbor:"14,keyasint,omitempty" json:"claims,omitempty"`
	ConfigMaps []KeySet    `cbor:"15,keyasint,omitempty" json:"configMaps,omitempty"`
	Secrets    []KeySet    `cbor:"16,keyasint,omitempty" json:"secrets,omitempty"`
	Warnings   []Warning   `cbor:"17,keyasint,omitempty" json:"warnings,omitempty"`
}

// Engine holds the engine facts the UI shows. It travels as one scalar section:
// a delta carries it whole when any field changed.
type Engine struct {
	Hostname      string `cbor:"1,keyasint,omitempty" json:"hostname,omitempty"`
	ServerVersion string `cbor:"2,keyasint,omitempty" json:"serverVersion,omitempty"`
	APIVersion    string `cbor:"3,keyasint,omitempty" json:"apiVersion,omitempty"`
	OS            string `cbor:"4,keyasint,omitempty" json:"os,omitempty"`
	OSType        string `cbor:"5,keyasint,omitempty" json:"osType,omitempty"`
	Arch          string `cbor:"6,keyasint,omitempty" json:"arch,omitempty"`
	Kernel        string `cbor:"7,keyasint,omitempty" json:"kernel,omitempty"`
	CPUs          int    `cbor:"8,keyasint,omitempty" json:"cpus,omitempty"`
	Memory        int64  `cbor:"9,keyasint,omitempty" json:"memory,omitempty"`
	StorageDriver string `cbor:"10,keyasint,omitempty" json:"storageDriver,omitempty"`
	Swarm         bool   `cbor:"11,keyasint,omitempty" json:"swarm,omitempty"`
}

// State is a container's run state.
type State uint8

// Container states, in the engine's vocabulary.
const (
	StateUnknown State = iota
	StateCreated
	StateRunning
	StatePaused
	StateRestarting
	StateRemoving
	StateExited
	StateDead
)

var stateNames = [...]string{"unknown", "created", "running", "paused", "restarting", "removing", "exited", "dead"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// ParseState maps the engine's state word to a State.
func ParseState(s string) State {
	for i, n := range stateNames {
		if n == s {
			return State(i)
		}
	}
	return StateUnknown
}

// MarshalText lets JSON views show the word rather than the number.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText is the inverse of MarshalText.
func (s *State) UnmarshalText(b []byte) error { *s = ParseState(string(b)); return nil }

// Health is a container's health check state; HealthNone when it declares none.
type Health uint8

// Health states.
const (
	HealthNone Health = iota
	HealthStarting
	HealthHealthy
	HealthUnhealthy
)

var healthNames = [...]string{"none", "starting", "healthy", "unhealthy"}

func (h Health) String() string {
	if int(h) < len(healthNames) {
		return healthNames[h]
	}
	return "none"
}

// ParseHealth maps the engine's health word to a Health.
func ParseHealth(s string) Health {
	for i, n := range healthNames {
		if n == s {
			return Health(i)
		}
	}
	return HealthNone
}

// MarshalText lets JSON views show the word rather than the number.
func (h Health) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText is the inverse of MarshalText.
func (h *Health) UnmarshalText(b []byte) error { *h = ParseHealth(string(b)); return nil }

// Container is one container. ID is the engine's 12-character short ID, which
// the engine accepts wherever it accepts a full ID.
type Container struct {
	ID       string            `cbor:"1,keyasint" json:"id"`
	Name     string            `cbor:"2,keyasint,omitempty" json:"name,omitempty"`
	Image    string            `cbor:"3,keyasint,omitempty" json:"image,omitempty"`
	ImageID  string            `cbor:"4,keyasint,omitempty" json:"imageId,omitempty"`
	Command  string            `cbor:"5,keyasint,omitempty" json:"command,omitempty"`
	State    State             `cbor:"6,keyasint,omitempty" json:"state"`
	Health   Health            `cbor:"7,keyasint,omitempty" json:"health,omitempty"`
	ExitCode int               `cbor:"8,keyasint,omitempty" json:"exitCode,omitempty"`
	Created  int64             `cbor:"9,keyasint,omitempty" json:"created,omitempty"`
	Started  int64             `cbor:"10,keyasint,omitempty" json:"started,omitempty"`
	Finished int64             `cbor:"11,keyasint,omitempty" json:"finished,omitempty"`
	Restart  string            `cbor:"12,keyasint,omitempty" json:"restart,omitempty"`
	Ports    []Port            `cbor:"13,keyasint,omitempty" json:"ports,omitempty"`
	Mounts   []Mount           `cbor:"14,keyasint,omitempty" json:"mounts,omitempty"`
	Networks []string          `cbor:"15,keyasint,omitempty" json:"networks,omitempty"`
	Labels   map[string]string `cbor:"16,keyasint,omitempty" json:"labels,omitempty"`
}

// Port is one published or exposed port.
type Port struct {
	Private uint16 `cbor:"1,keyasint,omitempty" json:"private,omitempty"`
	Public  uint16 `cbor:"2,keyasint,omitempty" json:"public,omitempty"`
	Proto   string `cbor:"3,keyasint,omitempty" json:"proto,omitempty"` // "" means tcp
	IP      string `cbor:"4,keyasint,omitempty" json:"ip,omitempty"`
}

// Mount is one mount of a container.
type Mount struct {
	Type        string `cbor:"1,keyasint,omitempty" json:"type,omitempty"`   // volume, bind, tmpfs
	Source      string `cbor:"2,keyasint,omitempty" json:"source,omitempty"` // volume name or host path
	Destination string `cbor:"3,keyasint,omitempty" json:"destination,omitempty"`
	ReadOnly    bool   `cbor:"4,keyasint,omitempty" json:"readOnly,omitempty"`
}

// Image is one local image. ID is the 12-character short ID.
type Image struct {
	ID      string   `cbor:"1,keyasint" json:"id"`
	Tags    []string `cbor:"2,keyasint,omitempty" json:"tags,omitempty"`
	Size    int64    `cbor:"3,keyasint,omitempty" json:"size,omitempty"`
	Created int64    `cbor:"4,keyasint,omitempty" json:"created,omitempty"`
}

// Volume is one volume, keyed by name.
type Volume struct {
	Name    string            `cbor:"1,keyasint" json:"name"`
	Driver  string            `cbor:"2,keyasint,omitempty" json:"driver,omitempty"` // "" means local
	Created int64             `cbor:"3,keyasint,omitempty" json:"created,omitempty"`
	Labels  map[string]string `cbor:"4,keyasint,omitempty" json:"labels,omitempty"`
}

// Network is one network. ID is the 12-character short ID.
type Network struct {
	ID       string            `cbor:"1,keyasint" json:"id"`
	Name     string            `cbor:"2,keyasint,omitempty" json:"name,omitempty"`
	Driver   string            `cbor:"3,keyasint,omitempty" json:"driver,omitempty"`
	Scope    string            `cbor:"4,keyasint,omitempty" json:"scope,omitempty"`
	Subnets  []string          `cbor:"5,keyasint,omitempty" json:"subnets,omitempty"`
	Internal bool              `cbor:"6,keyasint,omitempty" json:"internal,omitempty"`
	Labels   map[string]string `cbor:"7,keyasint,omitempty" json:"labels,omitempty"`
}

// Project is one compose project, as its containers' labels describe it.
type Project struct {
	Name        string   `cbor:"1,keyasint" json:"name"`
	WorkingDir  string   `cbor:"2,keyasint,omitempty" json:"workingDir,omitempty"`
	ConfigFiles string   `cbor:"3,keyasint,omitempty" json:"configFiles,omitempty"`
	Services    []string `cbor:"4,keyasint,omitempty" json:"services,omitempty"`
}

// Key returns the container's short ID.
func (c Container) Key() string { return c.ID }

// Key returns the image's short ID.
func (i Image) Key() string { return i.ID }

// Key returns the volume's name.
func (v Volume) Key() string { return v.Name }

// Key returns the network's short ID.
func (n Network) Key() string { return n.ID }

// Key returns the project's name.
func (p Project) Key() string { return p.Name }
