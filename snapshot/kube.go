package snapshot

// The Kubernetes side of a snapshot: what a cluster runs, as an operator
// of an edge site needs to see it. Every collection is keyed by the
// object's UID, so a rename (delete and create) is a removal and an
// addition, and two objects of one name in two namespaces never collide.
// Times are Unix seconds.

// Cluster holds the cluster facts the UI shows. It travels as one scalar
// section, like Engine.
type Cluster struct {
	Version  string `cbor:"1,keyasint,omitempty" json:"version,omitempty"`  // the API server's gitVersion
	Platform string `cbor:"2,keyasint,omitempty" json:"platform,omitempty"` // linux/amd64
}

// Node is one node.
type Node struct {
	UID           string   `cbor:"1,keyasint" json:"uid"`
	Name          string   `cbor:"2,keyasint,omitempty" json:"name,omitempty"`
	Roles         []string `cbor:"3,keyasint,omitempty" json:"roles,omitempty"` // from node-role.kubernetes.io/ labels
	Ready         bool     `cbor:"4,keyasint,omitempty" json:"ready,omitempty"`
	Unschedulable bool     `cbor:"5,keyasint,omitempty" json:"unschedulable,omitempty"`
	Kubelet       string   `cbor:"6,keyasint,omitempty" json:"kubelet,omitempty"` // kubelet version
	OS            string   `cbor:"7,keyasint,omitempty" json:"os,omitempty"`      // OS image
	Arch          string   `cbor:"8,keyasint,omitempty" json:"arch,omitempty"`
	CPU           string   `cbor:"9,keyasint,omitempty" json:"cpu,omitempty"` // capacity, as a quantity
	Memory        string   `cbor:"10,keyasint,omitempty" json:"memory,omitempty"`
	Created       int64    `cbor:"11,keyasint,omitempty" json:"created,omitempty"`
}

// Namespace is one namespace.
type Namespace struct {
	UID     string            `cbor:"1,keyasint" json:"uid"`
	Name    string            `cbor:"2,keyasint,omitempty" json:"name,omitempty"`
	Phase   string            `cbor:"3,keyasint,omitempty" json:"phase,omitempty"` // Active, Terminating
	Created int64             `cbor:"4,keyasint,omitempty" json:"created,omitempty"`
	Labels  map[string]string `cbor:"5,keyasint,omitempty" json:"labels,omitempty"`
}

// Workload kinds.
const (
	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
	KindDaemonSet   = "DaemonSet"
	KindJob         = "Job"
	KindCronJob     = "CronJob"
)

// Workload is a deployment, statefulset, daemonset, job or cronjob.
// Desired, Ready, Available and Updated count replicas (daemonsets: nodes
// scheduled; jobs: completions wanted and succeeded pods); Generation and
// Observed say whether the controller has seen the latest spec.
type Workload struct {
	UID        string            `cbor:"1,keyasint" json:"uid"`
	Kind       string            `cbor:"2,keyasint,omitempty" json:"kind,omitempty"`
	Namespace  string            `cbor:"3,keyasint,omitempty" json:"namespace,omitempty"`
	Name       string            `cbor:"4,keyasint,omitempty" json:"name,omitempty"`
	Images     []string          `cbor:"5,keyasint,omitempty" json:"images,omitempty"`
	Desired    int32             `cbor:"6,keyasint,omitempty" json:"desired,omitempty"`
	Ready      int32             `cbor:"7,keyasint,omitempty" json:"ready,omitempty"`
	Available  int32             `cbor:"8,keyasint,omitempty" json:"available,omitempty"`
	Updated    int32             `cbor:"9,keyasint,omitempty" json:"updated,omitempty"`
	Generation int64             `cbor:"10,keyasint,omitempty" json:"generation,omitempty"`
	Observed   int64             `cbor:"11,keyasint,omitempty" json:"observed,omitempty"`
	Active     int32             `cbor:"12,keyasint,omitempty" json:"active,omitempty"` // jobs and cronjobs: running now
	Failed     int32             `cbor:"13,keyasint,omitempty" json:"failed,omitempty"` // jobs: failed pods
	Complete   bool              `cbor:"14,keyasint,omitempty" json:"complete,omitempty"`
	Schedule   string            `cbor:"15,keyasint,omitempty" json:"schedule,omitempty"` // cronjobs
	Suspended  bool              `cbor:"16,keyasint,omitempty" json:"suspended,omitempty"`
	LastRun    int64             `cbor:"17,keyasint,omitempty" json:"lastRun,omitempty"` // cronjobs: last schedule time
	Problem    string            `cbor:"18,keyasint,omitempty" json:"problem,omitempty"` // the first failing condition's message
	Created    int64             `cbor:"19,keyasint,omitempty" json:"created,omitempty"`
	Labels     map[string]string `cbor:"20,keyasint,omitempty" json:"labels,omitempty"`
}

// Pod is one pod.
type Pod struct {
	UID        string            `cbor:"1,keyasint" json:"uid"`
	Namespace  string            `cbor:"2,keyasint,omitempty" json:"namespace,omitempty"`
	Name       string            `cbor:"3,keyasint,omitempty" json:"name,omitempty"`
	Phase      string            `cbor:"4,keyasint,omitempty" json:"phase,omitempty"` // Pending, Running, Succeeded, Failed, Unknown
	Node       string            `cbor:"5,keyasint,omitempty" json:"node,omitempty"`
	Restarts   int32             `cbor:"6,keyasint,omitempty" json:"restarts,omitempty"`
	Containers []PodContainer    `cbor:"7,keyasint,omitempty" json:"containers,omitempty"`
	Owner      string            `cbor:"8,keyasint,omitempty" json:"owner,omitempty"` // Kind/name of its controller
	Reason     string            `cbor:"9,keyasint,omitempty" json:"reason,omitempty"`
	Created    int64             `cbor:"10,keyasint,omitempty" json:"created,omitempty"`
	Labels     map[string]string `cbor:"11,keyasint,omitempty" json:"labels,omitempty"`
}

// PodContainer is one container of a pod, init containers included.
type PodContainer struct {
	Name     string `cbor:"1,keyasint" json:"name"`
	Image    string `cbor:"2,keyasint,omitempty" json:"image,omitempty"`
	Ready    bool   `cbor:"3,keyasint,omitempty" json:"ready,omitempty"`
	Restarts int32  `cbor:"4,keyasint,omitempty" json:"restarts,omitempty"`
	State    string `cbor:"5,keyasint,omitempty" json:"state,omitempty"`  // waiting, running, terminated
	Reason   string `cbor:"6,keyasint,omitempty" json:"reason,omitempty"` // CrashLoopBackOff, OOMKilled, ...
	Init     bool   `cbor:"7,keyasint,omitempty" json:"init,omitempty"`
}

// Service is one service.
type Service struct {
	UID       string            `cbor:"1,keyasint" json:"uid"`
	Namespace string            `cbor:"2,keyasint,omitempty" json:"namespace,omitempty"`
	Name      string            `cbor:"3,keyasint,omitempty" json:"name,omitempty"`
	Type      string            `cbor:"4,keyasint,omitempty" json:"type,omitempty"` // ClusterIP, NodePort, LoadBalancer, ExternalName
	ClusterIP string            `cbor:"5,keyasint,omitempty" json:"clusterIP,omitempty"`
	Ports     []ServicePort     `cbor:"6,keyasint,omitempty" json:"ports,omitempty"`
	Selector  map[string]string `cbor:"7,keyasint,omitempty" json:"selector,omitempty"`
	Created   int64             `cbor:"8,keyasint,omitempty" json:"created,omitempty"`
}

// ServicePort is one port of a service.
type ServicePort struct {
	Name     string `cbor:"1,keyasint,omitempty" json:"name,omitempty"`
	Port     int32  `cbor:"2,keyasint,omitempty" json:"port,omitempty"`
	Target   string `cbor:"3,keyasint,omitempty" json:"target,omitempty"` // a number or a port name
	NodePort int32  `cbor:"4,keyasint,omitempty" json:"nodePort,omitempty"`
	Proto    string `cbor:"5,keyasint,omitempty" json:"proto,omitempty"` // "" means TCP
}

// Ingress is one ingress.
type Ingress struct {
	UID       string        `cbor:"1,keyasint" json:"uid"`
	Namespace string        `cbor:"2,keyasint,omitempty" json:"namespace,omitempty"`
	Name      string        `cbor:"3,keyasint,omitempty" json:"name,omitempty"`
	Class     string        `cbor:"4,keyasint,omitempty" json:"class,omitempty"`
	Rules     []IngressRule `cbor:"5,keyasint,omitempty" json:"rules,omitempty"`
	TLS       []string      `cbor:"6,keyasint,omitempty" json:"tls,omitempty"` // hosts served over TLS
	Created   int64         `cbor:"7,keyasint,omitempty" json:"created,omitempty"`
}

// IngressRule is one path of an ingress and the service behind it.
type IngressRule struct {
	Host    string `cbor:"1,keyasint,omitempty" json:"host,omitempty"`
	Path    string `cbor:"2,keyasint,omitempty" json:"path,omitempty"`
	Service string `cbor:"3,keyasint,omitempty" json:"service,omitempty"`
	Port    string `cbor:"4,keyasint,omitempty" json:"port,omitempty"`
}

// Claim is one persistent volume claim.
type Claim struct {
	UID          string   `cbor:"1,keyasint" json:"uid"`
	Namespace    string   `cbor:"2,keyasint,omitempty" json:"namespace,omitempty"`
	Name         string   `cbor:"3,keyasint,omitempty" json:"name,omitempty"`
	Phase        string   `cbor:"4,keyasint,omitempty" json:"phase,omitempty"` // Pending, Bound, Lost
	StorageClass string   `cbor:"5,keyasint,omitempty" json:"storageClass,omitempty"`
	Requested    string   `cbor:"6,keyasint,omitempty" json:"requested,omitempty"` // a quantity
	Capacity     string   `cbor:"7,keyasint,omitempty" json:"capacity,omitempty"`
	AccessModes  []string `cbor:"8,keyasint,omitempty" json:"accessModes,omitempty"`
	Volume       string   `cbor:"9,keyasint,omitempty" json:"volume,omitempty"`
	Created      int64    `cbor:"10,keyasint,omitempty" json:"created,omitempty"`
}

// KeySet is a config map or a secret: its name and the names of its keys.
// Values are never collected.
type KeySet struct {
	UID       string   `cbor:"1,keyasint" json:"uid"`
	Namespace string   `cbor:"2,keyasint,omitempty" json:"namespace,omitempty"`
	Name      string   `cbor:"3,keyasint,omitempty" json:"name,omitempty"`
	Type      string   `cbor:"4,keyasint,omitempty" json:"type,omitempty"` // secrets: Opaque, kubernetes.io/tls, ...
	Keys      []string `cbor:"5,keyasint,omitempty" json:"keys,omitempty"`
	Created   int64    `cbor:"6,keyasint,omitempty" json:"created,omitempty"`
}

// Warning sums up the recent warning events of one object for one reason.
// Its ID is namespace/kind/name/reason, so repeats of one problem are one
// record whose count grows, not a record per event.
type Warning struct {
	ID      string `cbor:"1,keyasint" json:"id"`
	Object  string `cbor:"2,keyasint,omitempty" json:"object,omitempty"` // Kind/name
	Reason  string `cbor:"3,keyasint,omitempty" json:"reason,omitempty"`
	Message string `cbor:"4,keyasint,omitempty" json:"message,omitempty"` // the latest
	Count   int32  `cbor:"5,keyasint,omitempty" json:"count,omitempty"`
	Last    int64  `cbor:"6,keyasint,omitempty" json:"last,omitempty"`
}

// Key returns the node's UID.
func (n Node) Key() string { return n.UID }

// Key returns the namespace's UID.
func (n Namespace) Key() string { return n.UID }

// Key returns the workload's UID.
func (w Workload) Key() string { return w.UID }

// Key returns the pod's UID.
func (p Pod) Key() string { return p.UID }

// Key returns the service's UID.
func (s Service) Key() string { return s.UID }

// Key returns the ingress's UID.
func (i Ingress) Key() string { return i.UID }

// Key returns the claim's UID.
func (c Claim) Key() string { return c.UID }

// Key returns the config map's or secret's UID.
func (k KeySet) Key() string { return k.UID }

// Key returns the warning's namespace/kind/name/reason.
func (w Warning) Key() string { return w.ID }
