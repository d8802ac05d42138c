package kube

import (
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"outpost/snapshot"
)

// Headers of a request to the agent API's Kubernetes passthrough
// (/v2/kubernetes/...): which credentials the agent makes it with. The
// server sets one of them and strips both from what a user sends.
const (
	// HeaderToken carries the token of the user's service account.
	HeaderToken = "Outpost-Kube-Token"
	// HeaderAs set to AsAgent makes the request with the agent's own
	// credentials: for environment administrators only.
	HeaderAs = "Outpost-Kube-As"
	AsAgent  = "agent"
)

// CheckNamespaceName returns what is wrong with ns as a namespace name
// (nothing when it is a valid one).
func CheckNamespaceName(ns string) []string { return validation.IsDNS1123Label(ns) }

// SectionAllowed reports whether role may see a section of a Kubernetes
// snapshot at all (its row of the Access Restrictions table). Sections
// that are not Kubernetes ones are allowed.
func SectionAllowed(role, section string) bool {
	f, ok := SectionFunction(section)
	return !ok || Allowed(role, f) >= Read
}

// View returns a Kubernetes snapshot cut to what role, with the namespaces
// assigned to it, may see: the sections its row of the Access Restrictions
// table gives nothing are empty, and the objects of namespaces outside its
// scope are left out. d itself is not changed (it may be a cached one).
func View(d snapshot.Snapshot, role string, assigned []string) snapshot.Snapshot {
	in := func(ns string) bool { return InScope(role, assigned, ns) }
	gone := func(section string) bool { return !SectionAllowed(role, section) }
	if gone("cluster") {
		d.Cluster = snapshot.Cluster{}
	}
	if gone("nodes") {
		d.Nodes = nil
	}
	d.Namespaces = keepIn(d.Namespaces, gone("namespaces"), in, func(n snapshot.Namespace) string { return n.Name })
	d.Workloads = keepIn(d.Workloads, gone("workloads"), in, func(w snapshot.Workload) string { return w.Namespace })
	d.Pods = keepIn(d.Pods, gone("pods"), in, func(p snapshot.Pod) string { return p.Namespace })
	d.Services = keepIn(d.Services, gone("services"), in, func(s snapshot.Service) string { return s.Namespace })
	d.Ingresses = keepIn(d.Ingresses, gone("ingresses"), in, func(i snapshot.Ingress) string { return i.Namespace })
	d.Claims = keepIn(d.Claims, gone("claims"), in, func(c snapshot.Claim) string { return c.Namespace })
	d.ConfigMaps = keepIn(d.ConfigMaps, gone("configMaps"), in, func(k snapshot.KeySet) string { return k.Namespace })
	d.Secrets = keepIn(d.Secrets, gone("secrets"), in, func(k snapshot.KeySet) string { return k.Namespace })
	// A warning's ID starts with its object's namespace, empty for a
	// cluster-scoped object (a node), which whoever sees warnings sees.
	d.Warnings = keepIn(d.Warnings, gone("warnings"), func(ns string) bool { return ns == "" || in(ns) },
		func(w snapshot.Warning) string { ns, _, _ := strings.Cut(w.ID, "/"); return ns })
	return d
}

// keepIn returns, in a new slice, the items of xs whose namespace in
// accepts; none when the whole section is gone.
func keepIn[T any](xs []T, gone bool, in func(string) bool, ns func(T) string) []T {
	var out []T
	for _, x := range xs {
		if !gone && in(ns(x)) {
			out = append(out, x)
		}
	}
	return out
}
