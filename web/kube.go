package web

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"outpost/snapshot"
)

// The environment page of a Kubernetes cluster: its sections as tables,
// built here so one template renders them all.

// isKube reports whether d is a Kubernetes snapshot.
func isKube(d *snapshot.Snapshot) bool {
	return d.Cluster != (snapshot.Cluster{}) || len(d.Nodes)+len(d.Namespaces)+len(d.Workloads)+len(d.Pods) > 0
}

// kubeTabs are the environment page's tabs for a cluster, in order.
var kubeTabs = []struct{ id, label string }{
	{"workloads", "Workloads"},
	{"pods", "Pods"},
	{"namespaces", "Namespaces"},
	{"services", "Services"},
	{"ingresses", "Ingresses"},
	{"claims", "Volumes"},
	{"config", "Config & secrets"},
	{"nodes", "Nodes"},
	{"warnings", "Warnings"},
	{"history", "History"},
	{"commands", "Commands"},
	{"access", "Access"},
}

// cell is one table cell: its text, a CSS class, a tooltip.
type cell struct{ Text, Class, Title string }

// kubeTable is one section of a cluster, as a table.
type kubeTable struct {
	ID    string
	Empty string // shown when there are no rows
	Head  []string
	Rows  [][]cell
}

// kubeView is a cluster's snapshot as the page shows it: its summary, and
// the table of whichever tab is shown, made when the page asks for it.
type kubeView struct {
	Summary string
	d       *snapshot.Snapshot
	now     time.Time
}

// kubeTables make each tab's table, by tab ID.
var kubeTables = map[string]func(*snapshot.Snapshot, time.Time) kubeTable{
	"workloads":  workloadsTable,
	"pods":       podsTable,
	"namespaces": namespacesTable,
	"services":   servicesTable,
	"ingresses":  ingressesTable,
	"claims":     claimsTable,
	"config":     configTable,
	"nodes":      nodesTable,
	"warnings":   warningsTable,
}

// Table is the table of tab id, nil for a tab that has none (history,
// commands).
func (v *kubeView) Table(id string) *kubeTable {
	build, ok := kubeTables[id]
	if !ok {
		return nil
	}
	t := build(v.d, v.now)
	return &t
}

func txt(text string) cell { return cell{Text: cmp.Or(text, "—")} }

func mono(text string) cell { return cell{Text: cmp.Or(text, "—"), Class: "mono"} }

func when(t int64, now time.Time) cell {
	if t == 0 {
		return txt("")
	}
	return cell{Text: ago(unix(t), now), Class: "nowrap", Title: absTime(unix(t))}
}

func nsName(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// clusterFacts are the cluster's header facts.
func clusterFacts(d *snapshot.Snapshot) []fact {
	var out []fact
	if d.Cluster.Version != "" {
		out = append(out, fact{"Kubernetes", d.Cluster.Version})
	}
	if d.Cluster.Platform != "" {
		out = append(out, fact{"Platform", d.Cluster.Platform})
	}
	ready := 0
	for _, n := range d.Nodes {
		if n.Ready {
			ready++
		}
	}
	nodes := "none registered"
	if len(d.Nodes) > 0 {
		nodes = fmt.Sprintf("%d, %d ready", len(d.Nodes), ready)
	}
	out = append(out, fact{"Nodes", nodes})
	return out
}

// workloadState is a workload's readiness as a word and whether it is
// short of what it wants.
func workloadState(w snapshot.Workload) (string, bool) {
	switch w.Kind {
	case snapshot.KindCronJob:
		if w.Suspended {
			return "suspended", false
		}
		return fmt.Sprintf("%d active", w.Active), false
	case snapshot.KindJob:
		switch {
		case w.Complete:
			return "complete", false
		case w.Problem != "":
			return "failed", true
		}
		return fmt.Sprintf("%d/%d succeeded, %d active", w.Ready, w.Desired, w.Active), false
	}
	short := w.Ready < w.Desired || w.Available < w.Desired || w.Observed < w.Generation
	return fmt.Sprintf("%d/%d ready", w.Ready, w.Desired), short
}

func newKubeView(d *snapshot.Snapshot, now time.Time) *kubeView {
	v := &kubeView{d: d, now: now}
	phases := map[string]int{}
	for _, p := range d.Pods {
		phases[p.Phase]++
	}
	var parts []string
	for _, ph := range []string{"Running", "Pending", "Succeeded", "Failed", "Unknown"} {
		if phases[ph] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", phases[ph], strings.ToLower(ph)))
		}
	}
	short := 0
	for _, w := range d.Workloads {
		if _, s := workloadState(w); s {
			short++
		}
	}
	v.Summary = plural(len(d.Workloads), "workload", "workloads") + fmt.Sprintf(" (%d short of what they want)", short) +
		" · " + plural(len(d.Pods), "pod", "pods")
	if len(parts) > 0 {
		v.Summary += ": " + strings.Join(parts, ", ")
	}
	v.Summary += " · " + plural(len(d.Namespaces), "namespace", "namespaces")
	return v
}

func workloadsTable(d *snapshot.Snapshot, now time.Time) kubeTable {
	t := kubeTable{ID: "workloads", Empty: "No deployments, statefulsets, daemonsets, jobs or cronjobs.",
		Head: []string{"Workload", "Kind", "State", "Images", "Problem", "Created"}}
	for _, w := range sortedBy(d.Workloads, func(w snapshot.Workload) string { return nsName(w.Namespace, w.Name) }) {
		state, bad := workloadState(w)
		sc := txt(state)
		if bad {
			sc.Class = "warn"
		}
		t.Rows = append(t.Rows, []cell{{Text: nsName(w.Namespace, w.Name), Class: "strong"}, txt(w.Kind), sc,
			mono(strings.Join(w.Images, ", ")), {Text: cmp.Or(w.Problem, "—"), Class: "small"}, when(w.Created, now)})
	}
	return t
}

func podsTable(d *snapshot.Snapshot, now time.Time) kubeTable {

	t := kubeTable{ID: "pods", Empty: "No pods.", Head: []string{"Pod", "Phase", "Node", "Restarts", "Containers", "Owner", "Created"}}
	for _, p := range sortedBy(d.Pods, func(p snapshot.Pod) string { return nsName(p.Namespace, p.Name) }) {
		var cs []string
		for _, pc := range p.Containers {
			s := pc.Name + " " + pc.Image
			if pc.State != "" {
				s += " (" + cmp.Or(pc.Reason, pc.State) + ")"
			}
			if pc.Init {
				s = "init " + s
			}
			cs = append(cs, s)
		}
		phase := txt(p.Phase)
		if p.Reason != "" {
			phase.Text += " (" + p.Reason + ")"
		}
		if p.Phase == "Failed" || p.Phase == "Unknown" {
			phase.Class = "warn"
		}
		restarts := txt(strconv.Itoa(int(p.Restarts)))
		if p.Restarts > 0 {
			restarts.Class = "warn"
		}
		t.Rows = append(t.Rows, []cell{{Text: nsName(p.Namespace, p.Name), Class: "mono"}, phase, txt(p.Node), restarts,
			{Text: strings.Join(cs, "; "), Class: "mono small"}, txt(p.Owner), when(p.Created, now)})
	}
	return t
}

func namespacesTable(d *snapshot.Snapshot, now time.Time) kubeTable {

	t := kubeTable{ID: "namespaces", Empty: "No namespaces.", Head: []string{"Namespace", "Phase", "Workloads", "Pods", "Labels", "Created"}}
	wl, pods := map[string]int{}, map[string]int{}
	for _, w := range d.Workloads {
		wl[w.Namespace]++
	}
	for _, p := range d.Pods {
		pods[p.Namespace]++
	}
	for _, n := range sortedBy(d.Namespaces, func(n snapshot.Namespace) string { return n.Name }) {
		t.Rows = append(t.Rows, []cell{{Text: n.Name, Class: "strong"}, txt(n.Phase), txt(strconv.Itoa(wl[n.Name])), txt(strconv.Itoa(pods[n.Name])),
			{Text: labelText(n.Labels), Class: "mono small"}, when(n.Created, now)})
	}
	return t
}

func servicesTable(d *snapshot.Snapshot, now time.Time) kubeTable {

	t := kubeTable{ID: "services", Empty: "No services.", Head: []string{"Service", "Type", "Cluster IP", "Ports", "Selector"}}
	for _, s := range sortedBy(d.Services, func(s snapshot.Service) string { return nsName(s.Namespace, s.Name) }) {
		var ports []string
		for _, p := range s.Ports {
			x := strconv.Itoa(int(p.Port))
			if p.Target != "" {
				x += "→" + p.Target
			}
			if p.NodePort != 0 {
				x += " (node " + strconv.Itoa(int(p.NodePort)) + ")"
			}
			if p.Proto != "" {
				x += "/" + strings.ToLower(p.Proto)
			}
			ports = append(ports, x)
		}
		t.Rows = append(t.Rows, []cell{{Text: nsName(s.Namespace, s.Name), Class: "strong"}, txt(s.Type), mono(s.ClusterIP),
			mono(strings.Join(ports, ", ")), {Text: labelText(s.Selector), Class: "mono small"}})
	}
	return t
}

func ingressesTable(d *snapshot.Snapshot, now time.Time) kubeTable {

	t := kubeTable{ID: "ingresses", Empty: "No ingresses.", Head: []string{"Ingress", "Class", "Rules", "TLS"}}
	for _, i := range sortedBy(d.Ingresses, func(i snapshot.Ingress) string { return nsName(i.Namespace, i.Name) }) {
		var rules []string
		for _, r := range i.Rules {
			rules = append(rules, cmp.Or(r.Host, "*")+r.Path+" → "+cmp.Or(r.Service, "—")+":"+r.Port)
		}
		t.Rows = append(t.Rows, []cell{{Text: nsName(i.Namespace, i.Name), Class: "strong"}, txt(i.Class),
			mono(strings.Join(rules, "; ")), mono(strings.Join(i.TLS, ", "))})
	}
	return t
}

func claimsTable(d *snapshot.Snapshot, now time.Time) kubeTable {

	t := kubeTable{ID: "claims", Empty: "No persistent volume claims.", Head: []string{"Claim", "Phase", "Requested", "Capacity", "Class", "Access", "Volume"}}
	for _, p := range sortedBy(d.Claims, func(p snapshot.Claim) string { return nsName(p.Namespace, p.Name) }) {
		phase := txt(p.Phase)
		if p.Phase != "Bound" {
			phase.Class = "warn"
		}
		t.Rows = append(t.Rows, []cell{{Text: nsName(p.Namespace, p.Name), Class: "strong"}, phase, txt(p.Requested), txt(p.Capacity),
			txt(p.StorageClass), txt(strings.Join(p.AccessModes, ", ")), mono(p.Volume)})
	}
	return t
}

func configTable(d *snapshot.Snapshot, now time.Time) kubeTable {

	t := kubeTable{ID: "config", Empty: "No config maps or secrets.", Head: []string{"Name", "Kind", "Keys (values are never collected)", "Created"}}
	type keyed struct {
		k    snapshot.KeySet
		kind string
	}
	var ks []keyed
	for _, k := range d.ConfigMaps {
		ks = append(ks, keyed{k, "config map"})
	}
	for _, k := range d.Secrets {
		ks = append(ks, keyed{k, "secret " + k.Type})
	}
	slices.SortFunc(ks, func(a, b keyed) int {
		return cmp.Or(strings.Compare(nsName(a.k.Namespace, a.k.Name), nsName(b.k.Namespace, b.k.Name)), strings.Compare(a.kind, b.kind))
	})
	for _, k := range ks {
		t.Rows = append(t.Rows, []cell{{Text: nsName(k.k.Namespace, k.k.Name), Class: "strong"}, txt(k.kind),
			mono(strings.Join(k.k.Keys, ", ")), when(k.k.Created, now)})
	}
	return t
}

func nodesTable(d *snapshot.Snapshot, now time.Time) kubeTable {

	t := kubeTable{ID: "nodes", Empty: "No nodes: the cluster has no kubelet registered.", Head: []string{"Node", "Ready", "Roles", "Kubelet", "OS", "Arch", "CPU", "Memory"}}
	for _, n := range sortedBy(d.Nodes, func(n snapshot.Node) string { return n.Name }) {
		ready := txt("yes")
		if !n.Ready {
			ready = cell{Text: "no", Class: "warn"}
		}
		if n.Unschedulable {
			ready.Text += ", cordoned"
		}
		t.Rows = append(t.Rows, []cell{{Text: n.Name, Class: "strong"}, ready, txt(strings.Join(n.Roles, ", ")), txt(n.Kubelet), txt(n.OS), txt(n.Arch), txt(n.CPU), txt(n.Memory)})
	}
	return t
}

func warningsTable(d *snapshot.Snapshot, now time.Time) kubeTable {

	t := kubeTable{ID: "warnings", Empty: "No warning event in the last hour.", Head: []string{"Object", "Reason", "Count", "Latest message", "Last"}}
	latest := slices.Clone(d.Warnings) // kept by ID; shown latest first
	slices.SortStableFunc(latest, func(a, b snapshot.Warning) int { return cmp.Compare(b.Last, a.Last) })
	for _, w := range latest {
		ns, _, _ := strings.Cut(w.ID, "/")
		t.Rows = append(t.Rows, []cell{mono(nsName(ns, w.Object)), {Text: w.Reason, Class: "warn"}, txt(strconv.Itoa(int(w.Count))),
			{Text: w.Message, Class: "small"}, when(w.Last, now)})
	}
	return t
}

// kubeCounts are the tab counts of a cluster.
func kubeCounts(d *snapshot.Snapshot) map[string]int {
	return map[string]int{
		"workloads": len(d.Workloads), "pods": len(d.Pods), "namespaces": len(d.Namespaces), "services": len(d.Services),
		"ingresses": len(d.Ingresses), "claims": len(d.Claims), "config": len(d.ConfigMaps) + len(d.Secrets),
		"nodes": len(d.Nodes), "warnings": len(d.Warnings),
	}
}

func sortedBy[T any](s []T, key func(T) string) []T {
	out := slices.Clone(s)
	slices.SortStableFunc(out, func(a, b T) int { return strings.Compare(key(a), key(b)) })
	return out
}

func labelText(l map[string]string) string {
	var out []string
	for k, v := range l {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}
