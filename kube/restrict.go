package kube

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// The environment roles of a cluster, the columns of the source document's
// Access Restrictions table and the rows of its Role Allocations table.
// They are Outpost's role names (server/roles.go); Outpost's administrator
// is an environment administrator of every cluster.
const (
	EnvAdmin = "environment-administrator"
	Operator = "operator"
	Helpdesk = "helpdesk"
	Standard = "standard-user"
	ReadOnly = "read-only-user"
)

// EnvRoles lists the environment roles in the tables' column order.
var EnvRoles = []string{EnvAdmin, Operator, Helpdesk, Standard, ReadOnly}

// Function is a row of the Access Restrictions table: something a user does
// with a cluster through Outpost.
type Function string

// The rows of the Access Restrictions table, named as it names them.
const (
	FnNamespaces         Function = "Namespaces"
	FnNamespaceDetails   Function = "Namespace Details"
	FnNamespaceAccess    Function = "Namespace Access Management"
	FnApplications       Function = "Applications"
	FnApplicationDetails Function = "Application Details"
	FnPodDelete          Function = "Pod Delete"
	FnConsole            Function = "Application Console"
	FnAdvancedDeployment Function = "Advanced Deployment"
	FnConfig             Function = "ConfigMaps & Secrets"
	FnConfigDetails      Function = "ConfigMap & Secret Details"
	FnVolumes            Function = "Volumes"
	FnVolumeDetails      Function = "Volume Details"
	FnCluster            Function = "Cluster"
	FnNodes              Function = "Cluster Node View"
	FnClusterSetup       Function = "Cluster Setup"
	FnErrorDetails       Function = "Application Error Details"
	// FnStorageClasses is the table's "Storage Class Disabled" row: who
	// sees the cluster's storage classes.
	FnStorageClasses Function = "Storage Class Disabled"
	// FnDiscovery is not a row: the API's discovery paths (/api, /apis,
	// /version, /openapi), which every client reads first and every role
	// may read.
	FnDiscovery Function = "discovery"
)

// Level is a cell of the Access Restrictions table.
type Level int

const (
	None  Level = iota // an empty cell
	Read               // "R"
	Write              // "RW" or "Yes"
)

func (l Level) String() string { return [...]string{"none", "read", "read and write"}[l] }

// restrictions is the Access Restrictions table, row by row, in the
// column order of EnvRoles. Its Namespace Scope row is scopes.
var restrictions = map[Function][5]Level{
	FnNamespaces:         {Write, Read, Read, Read, Read},
	FnNamespaceDetails:   {Write, Read, Read, Read, Read},
	FnNamespaceAccess:    {Write, None, None, None, None},
	FnApplications:       {Write, Read, Read, Write, Read},
	FnApplicationDetails: {Write, Read, Read, Write, Read},
	FnPodDelete:          {Write, Write, None, None, None},
	FnConsole:            {Write, Write, None, None, None},
	FnAdvancedDeployment: {Write, Write, None, None, None},
	FnConfig:             {Write, Read, Read, Write, Read},
	FnConfigDetails:      {Write, Write, Read, Write, Read},
	FnVolumes:            {Write, Read, Read, Write, Read},
	FnVolumeDetails:      {Write, Read, Read, Write, Read},
	FnCluster:            {Write, Read, Read, None, None},
	FnNodes:              {Write, Read, Read, None, None},
	FnClusterSetup:       {Write, None, None, None, None},
	FnErrorDetails:       {Read, Read, Read, None, None},
	FnStorageClasses:     {Read, Read, Read, None, None},
	FnDiscovery:          {Read, Read, Read, Read, Read},
}

// Functions lists the table's rows (Namespace Scope aside) in its order.
var Functions = []Function{FnNamespaces, FnNamespaceDetails, FnNamespaceAccess, FnApplications, FnApplicationDetails,
	FnPodDelete, FnConsole, FnAdvancedDeployment, FnConfig, FnConfigDetails, FnVolumes, FnVolumeDetails, FnCluster, FnNodes,
	FnClusterSetup, FnErrorDetails, FnStorageClasses}

// Allowed is the cell of role and f: what role may do there.
func Allowed(role string, f Function) Level {
	i := slices.Index(EnvRoles, role)
	if i < 0 {
		return None
	}
	return restrictions[f][i]
}

// Scope is a role's Namespace Scope, the table's first row.
type Scope int

const (
	ScopeAll       Scope = iota // "All"
	ScopeNonSystem              // "All, EXCEPT System"
	ScopeAssigned               // "Default + Assigned"
)

var scopes = map[string]Scope{EnvAdmin: ScopeAll, Operator: ScopeNonSystem, Helpdesk: ScopeNonSystem, Standard: ScopeAssigned, ReadOnly: ScopeAssigned}

// RoleScope is role's namespace scope; an unknown role gets the narrowest.
func RoleScope(role string) Scope {
	if s, ok := scopes[role]; ok {
		return s
	}
	return ScopeAssigned
}

// System reports whether ns is a system namespace: kube-system and every
// other kube-* namespace, and the agent's own (Namespace: it holds the
// agent's cluster-admin service account and the users' ones).
func System(ns string) bool {
	return strings.HasPrefix(ns, "kube-") || ns == Namespace
}

// InScope reports whether a user of role with the namespaces assigned to
// them (directly or through a team) may see namespace ns at all.
func InScope(role string, assigned []string, ns string) bool {
	switch RoleScope(role) {
	case ScopeAll:
		return true
	case ScopeNonSystem:
		return !System(ns)
	}
	// A system namespace is never assigned, whatever the assignment says.
	return !System(ns) && (ns == "default" || slices.Contains(assigned, ns))
}

// Request is a Kubernetes API request as Classify reads it.
type Request struct {
	Verb      string // get, list, watch, create, update, patch, delete, deletecollection
	Group     string // "" for the core group
	Resource  string // e.g. pods; empty for a discovery path
	Sub       string // subresource, e.g. exec, log, status
	Namespace string // empty for cluster-scoped resources and lists across namespaces
	Name      string
	// Namespaced is true when the resource lives in namespaces: a request
	// for it without Namespace spans them all.
	Namespaced bool
	// Apply is a server-side apply (PATCH application/apply-patch+yaml).
	Apply bool
}

// clusterScoped are the resources of the groups the tables name that
// live outside namespaces.
var clusterScoped = map[string]bool{
	"namespaces": true, "nodes": true, "persistentvolumes": true, "componentstatuses": true, "storageclasses": true,
	"ingressclasses": true, "clusterroles": true, "clusterrolebindings": true, "customresourcedefinitions": true,
	"apiservices": true, "priorityclasses": true, "csidrivers": true, "csinodes": true, "volumeattachments": true,
	"runtimeclasses": true, "mutatingwebhookconfigurations": true, "validatingwebhookconfigurations": true,
	"certificatesigningrequests": true, "tokenreviews": true, "selfsubjectaccessreviews": true,
	"selfsubjectrulesreviews": true, "subjectaccessreviews": true, "selfsubjectreviews": true,
}

// Classify reads a Kubernetes API request: method, path and the body's
// content type.
func Classify(method, path, contentType string) (Request, error) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	var r Request
	// A dot segment would be read as a name here and resolved as a step
	// up by whatever cleans the path later (an escaped slash decodes to one).
	if slices.Contains(parts, ".") || slices.Contains(parts, "..") {
		return r, fmt.Errorf("%s: a path with . or .. segments", path)
	}
	switch {
	case path == "/" || parts[0] == "version" || parts[0] == "openapi" || (parts[0] == "api" && len(parts) <= 2) ||
		(parts[0] == "apis" && len(parts) <= 3):
		if method != http.MethodGet && method != http.MethodHead {
			return r, fmt.Errorf("%s %s: discovery paths are read-only", method, path)
		}
		r.Verb = "get"
		return r, nil
	case parts[0] == "api":
		parts = parts[2:] // api, v1
	case parts[0] == "apis":
		r.Group, parts = parts[1], parts[3:] // apis, group, version
	default:
		return r, fmt.Errorf("%s: not a Kubernetes API path (/api/v1/..., /apis/GROUP/VERSION/...)", path)
	}
	if parts[0] == "watch" { // the old /watch/ prefix
		parts = parts[1:]
		method = "WATCH"
	}
	if len(parts) >= 3 && parts[0] == "namespaces" && !(len(parts) == 3 && (parts[2] == "status" || parts[2] == "finalize")) {
		r.Namespace, parts = parts[1], parts[2:]
		r.Namespaced = true
	}
	if len(parts) == 0 || len(parts) > 3 || slices.Contains(parts, "") {
		return r, fmt.Errorf("%s: not a resource path", path)
	}
	r.Resource = parts[0]
	if len(parts) > 1 {
		r.Name = parts[1]
	}
	if len(parts) > 2 {
		r.Sub = parts[2]
	}
	if !r.Namespaced {
		r.Namespaced = !clusterScoped[r.Resource]
	}
	if r.Resource == "namespaces" && r.Name != "" {
		r.Namespace = r.Name // a namespace itself is in its own scope
	}
	switch method {
	case http.MethodGet, http.MethodHead:
		r.Verb = "get"
		if r.Name == "" {
			r.Verb = "list"
		}
	case "WATCH":
		r.Verb = "watch"
	case http.MethodPost:
		r.Verb = "create"
	case http.MethodPut:
		r.Verb = "update"
	case http.MethodPatch:
		r.Verb = "patch"
		r.Apply = strings.HasPrefix(contentType, "application/apply-patch")
	case http.MethodDelete:
		r.Verb = "delete"
		if r.Name == "" {
			r.Verb = "deletecollection"
		}
	default:
		return r, fmt.Errorf("%s %s: method not used by the Kubernetes API", method, path)
	}
	if r.Sub == "exec" || r.Sub == "attach" || r.Sub == "portforward" {
		r.Verb = "create" // they upgrade a GET; Kubernetes authorizes them as create too
	}
	return r, nil
}

// Write reports whether r changes something.
func (r Request) Write() bool {
	return r.Verb != "get" && r.Verb != "list" && r.Verb != "watch"
}

// Function says which row of the Access Restrictions table r falls under.
func (r Request) Function() Function {
	if r.Resource == "" {
		return FnDiscovery
	}
	details := r.Name != ""
	pick := func(list, detail Function) Function {
		if details {
			return detail
		}
		return list
	}
	// The rows that guard access and the cluster itself come first: a
	// server-side apply of a binding or a node is theirs, not an
	// advanced deployment.
	switch {
	case r.Resource == "namespaces":
		return pick(FnNamespaces, FnNamespaceDetails)
	case r.Group == "rbac.authorization.k8s.io":
		return FnNamespaceAccess
	case !r.Namespaced && r.Write():
		return FnClusterSetup
	case r.Apply:
		return FnAdvancedDeployment
	case r.Resource == "pods" && (r.Sub == "exec" || r.Sub == "attach" || r.Sub == "portforward"):
		return FnConsole
	case r.Resource == "pods" && (r.Verb == "delete" || r.Verb == "deletecollection"):
		return FnPodDelete
	case r.Resource == "configmaps" || r.Resource == "secrets":
		return pick(FnConfig, FnConfigDetails)
	case r.Resource == "persistentvolumeclaims" || r.Resource == "persistentvolumes":
		return pick(FnVolumes, FnVolumeDetails)
	case r.Resource == "events":
		return FnErrorDetails
	case r.Resource == "storageclasses" && !r.Write():
		return FnStorageClasses
	case r.Resource == "nodes" && !r.Write():
		return FnNodes
	case !r.Namespaced:
		return FnCluster
	}
	return pick(FnApplications, FnApplicationDetails)
}

// Check says whether a user of role, with the namespaces assigned to them,
// may make request r through Outpost: the cell of its function, and the
// namespace scope. The error says which and what the role lacks. Kubernetes
// itself checks the same request again against the user's service account.
func Check(role string, assigned []string, r Request) error {
	f := r.Function()
	need := Read
	if r.Write() {
		need = Write
	}
	if have := Allowed(role, f); have < need {
		if have == None {
			return fmt.Errorf("%s: role %s has no access (Access Restrictions table)", f, role)
		}
		return fmt.Errorf("%s: role %s may read only, not %s (Access Restrictions table)", f, role, r.Verb)
	}
	if RoleScope(role) == ScopeAll {
		return nil
	}
	if r.Namespace != "" && !InScope(role, assigned, r.Namespace) {
		return fmt.Errorf("namespace %s is outside the scope of role %s (%s)", r.Namespace, role, scopeText(role))
	}
	if r.Namespace == "" && r.Namespaced && r.Resource != "" {
		return fmt.Errorf("%s across all namespaces: role %s reads namespace by namespace (%s)", r.Resource, role, scopeText(role))
	}
	return nil
}

func scopeText(role string) string {
	switch RoleScope(role) {
	case ScopeAll:
		return "all namespaces"
	case ScopeNonSystem:
		return "all namespaces but the system ones"
	}
	return "default and the namespaces assigned to them"
}

// SectionFunction is the row of the Access Restrictions table that a
// section of a Kubernetes snapshot (the API's ?section=, the console's
// tabs) shows; ok is false for a section that is not a Kubernetes one.
func SectionFunction(section string) (f Function, ok bool) {
	switch section {
	case "namespaces":
		return FnNamespaces, true
	case "workloads", "pods", "services", "ingresses":
		return FnApplications, true
	case "configMaps", "secrets":
		return FnConfig, true
	case "claims":
		return FnVolumes, true
	case "nodes":
		return FnNodes, true
	case "cluster":
		return FnCluster, true
	case "warnings":
		return FnErrorDetails, true
	}
	return "", false
}
