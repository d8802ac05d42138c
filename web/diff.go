package web

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"outpost/snapshot"
)

// change is one line of a diff: what it is, and for a changed container
// each field that changed, before and after.
type change struct {
	Name   string
	Detail string
	Fields []fieldChange
}

type fieldChange struct{ Field, From, To string }

// diffSection is the changes of one collection between two points.
type diffSection struct {
	Title                   string
	Added, Removed, Changed []change
}

func (s diffSection) Empty() bool { return len(s.Added)+len(s.Removed)+len(s.Changed) == 0 }

// snapDiff is what changed between two snapshots, section by section.
type snapDiff struct {
	Sections []diffSection
	Engine   []fieldChange
}

func (d snapDiff) Empty() bool {
	if len(d.Engine) > 0 {
		return false
	}
	for _, s := range d.Sections {
		if !s.Empty() {
			return false
		}
	}
	return true
}

// Counts sums the sections: added, removed, changed.
func (d snapDiff) Counts() (a, r, c int) {
	for _, s := range d.Sections {
		a, r, c = a+len(s.Added), r+len(s.Removed), c+len(s.Changed)
	}
	return a, r, c
}

// diffKeyed compares two collections by key: added, removed, and, for keys
// in both, the changes fields reports.
func diffKeyed[T any](title string, from, to []T, key func(T) string, describe func(T) string, fields func(a, b T) []fieldChange) diffSection {
	s := diffSection{Title: title}
	old := map[string]T{}
	for _, x := range from {
		old[key(x)] = x
	}
	seen := map[string]bool{}
	for _, x := range to {
		k := key(x)
		seen[k] = true
		prev, ok := old[k]
		if !ok {
			s.Added = append(s.Added, change{Name: describe(x)})
			continue
		}
		if fields != nil {
			if fc := fields(prev, x); len(fc) > 0 {
				s.Changed = append(s.Changed, change{Name: describe(x), Fields: fc})
			}
		}
	}
	for _, x := range from {
		if !seen[key(x)] {
			s.Removed = append(s.Removed, change{Name: describe(x)})
		}
	}
	for _, l := range [][]change{s.Added, s.Removed, s.Changed} {
		slices.SortFunc(l, func(a, b change) int { return cmp.Compare(a.Name, b.Name) })
	}
	return s
}

func field(out []fieldChange, name, a, b string) []fieldChange {
	if a != b {
		out = append(out, fieldChange{Field: name, From: cmp.Or(a, "—"), To: cmp.Or(b, "—")})
	}
	return out
}

func healthText(h snapshot.Health) string {
	if h == snapshot.HealthNone {
		return ""
	}
	return h.String()
}

// diffSnapshots compares two snapshots: containers added, removed or changed
// (state, image, health, exit code, ports, restarts), and images, volumes,
// networks and compose projects added or removed.
func diffSnapshots(a, b *snapshot.Snapshot) snapDiff {
	var d snapDiff
	d.Engine = field(d.Engine, "Docker", a.Engine.ServerVersion, b.Engine.ServerVersion)
	d.Engine = field(d.Engine, "Hostname", a.Engine.Hostname, b.Engine.Hostname)
	d.Engine = field(d.Engine, "Kernel", a.Engine.Kernel, b.Engine.Kernel)
	name := func(c snapshot.Container) string { return cmp.Or(c.Name, c.ID) }
	// Containers are matched by name when they have one: a container
	// recreated by Compose keeps its name under a new ID, and that is a
	// change of image, not one removal and one addition.
	d.Sections = append(d.Sections, diffKeyed("Containers", a.Containers, b.Containers, name,
		func(c snapshot.Container) string { return name(c) },
		func(x, y snapshot.Container) []fieldChange {
			var fc []fieldChange
			fc = field(fc, "state", x.State.String(), y.State.String())
			fc = field(fc, "health", healthText(x.Health), healthText(y.Health))
			fc = field(fc, "image", x.Image, y.Image)
			if x.Image == y.Image && x.ImageID != y.ImageID {
				fc = field(fc, "image ID", shortID(x.ImageID), shortID(y.ImageID))
			}
			if x.State == snapshot.StateExited || y.State == snapshot.StateExited {
				fc = field(fc, "exit code", strconv.Itoa(x.ExitCode), strconv.Itoa(y.ExitCode))
			}
			fc = field(fc, "ports", strings.Join(ports(x.Ports), " "), strings.Join(ports(y.Ports), " "))
			if x.ID != y.ID {
				fc = field(fc, "container ID", shortID(x.ID), shortID(y.ID))
			} else if x.Started != y.Started && x.Started != 0 && y.Started != 0 {
				fc = append(fc, fieldChange{Field: "started", From: absTime(unix(x.Started)), To: absTime(unix(y.Started))})
			}
			return fc
		}))
	d.Sections = append(d.Sections, diffKeyed("Images", a.Images, b.Images,
		func(i snapshot.Image) string { return i.ID },
		func(i snapshot.Image) string {
			if len(i.Tags) > 0 {
				return strings.Join(i.Tags, ", ")
			}
			return shortID(i.ID)
		},
		func(x, y snapshot.Image) []fieldChange {
			return field(nil, "tags", strings.Join(x.Tags, ", "), strings.Join(y.Tags, ", "))
		}))
	d.Sections = append(d.Sections, diffKeyed("Volumes", a.Volumes, b.Volumes,
		func(v snapshot.Volume) string { return v.Name }, func(v snapshot.Volume) string { return v.Name }, nil))
	d.Sections = append(d.Sections, diffKeyed("Networks", a.Networks, b.Networks,
		func(n snapshot.Network) string { return n.ID }, func(n snapshot.Network) string { return cmp.Or(n.Name, n.ID) }, nil))
	d.Sections = append(d.Sections, diffKeyed("Compose projects", a.Projects, b.Projects,
		func(p snapshot.Project) string { return p.Name }, func(p snapshot.Project) string { return p.Name },
		func(x, y snapshot.Project) []fieldChange {
			return field(nil, "services", strings.Join(x.Services, ", "), strings.Join(y.Services, ", "))
		}))
	diffKube(&d, a, b)
	return d
}

// diffKube adds the Kubernetes sections: objects matched by UID, so a pod
// its replica set replaced is one removed and one added; what changed in
// those in both.
func diffKube(d *snapDiff, a, b *snapshot.Snapshot) {
	d.Engine = field(d.Engine, "Kubernetes", a.Cluster.Version, b.Cluster.Version)
	num := func(n int32) string { return strconv.Itoa(int(n)) }
	d.Sections = append(d.Sections, diffKeyed("Nodes", a.Nodes, b.Nodes,
		func(n snapshot.Node) string { return n.UID }, func(n snapshot.Node) string { return n.Name },
		func(x, y snapshot.Node) []fieldChange {
			fc := field(nil, "ready", strconv.FormatBool(x.Ready), strconv.FormatBool(y.Ready))
			return field(fc, "kubelet", x.Kubelet, y.Kubelet)
		}))
	d.Sections = append(d.Sections, diffKeyed("Namespaces", a.Namespaces, b.Namespaces,
		func(n snapshot.Namespace) string { return n.UID }, func(n snapshot.Namespace) string { return n.Name },
		func(x, y snapshot.Namespace) []fieldChange { return field(nil, "phase", x.Phase, y.Phase) }))
	d.Sections = append(d.Sections, diffKeyed("Workloads", a.Workloads, b.Workloads,
		func(w snapshot.Workload) string { return w.UID },
		func(w snapshot.Workload) string { return strings.ToLower(w.Kind) + " " + nsName(w.Namespace, w.Name) },
		func(x, y snapshot.Workload) []fieldChange {
			sx, _ := workloadState(x)
			sy, _ := workloadState(y)
			fc := field(nil, "state", sx, sy)
			fc = field(fc, "images", strings.Join(x.Images, ", "), strings.Join(y.Images, ", "))
			fc = field(fc, "problem", x.Problem, y.Problem)
			return field(fc, "schedule", x.Schedule, y.Schedule)
		}))
	d.Sections = append(d.Sections, diffKeyed("Pods", a.Pods, b.Pods,
		func(p snapshot.Pod) string { return p.UID }, func(p snapshot.Pod) string { return nsName(p.Namespace, p.Name) },
		func(x, y snapshot.Pod) []fieldChange {
			fc := field(nil, "phase", x.Phase, y.Phase)
			fc = field(fc, "node", x.Node, y.Node)
			fc = field(fc, "restarts", num(x.Restarts), num(y.Restarts))
			return field(fc, "reason", x.Reason, y.Reason)
		}))
	d.Sections = append(d.Sections, diffKeyed("Services", a.Services, b.Services,
		func(s snapshot.Service) string { return s.UID }, func(s snapshot.Service) string { return nsName(s.Namespace, s.Name) },
		func(x, y snapshot.Service) []fieldChange {
			ports := func(ps []snapshot.ServicePort) string {
				var out []string
				for _, p := range ps {
					out = append(out, num(p.Port)+"→"+p.Target)
				}
				return strings.Join(out, ", ")
			}
			return field(field(nil, "type", x.Type, y.Type), "ports", ports(x.Ports), ports(y.Ports))
		}))
	d.Sections = append(d.Sections, diffKeyed("Ingresses", a.Ingresses, b.Ingresses,
		func(i snapshot.Ingress) string { return i.UID }, func(i snapshot.Ingress) string { return nsName(i.Namespace, i.Name) },
		func(x, y snapshot.Ingress) []fieldChange {
			rules := func(rs []snapshot.IngressRule) string {
				var out []string
				for _, r := range rs {
					out = append(out, r.Host+r.Path+"→"+r.Service+":"+r.Port)
				}
				return strings.Join(out, ", ")
			}
			return field(nil, "rules", rules(x.Rules), rules(y.Rules))
		}))
	d.Sections = append(d.Sections, diffKeyed("Volume claims", a.Claims, b.Claims,
		func(c snapshot.Claim) string { return c.UID }, func(c snapshot.Claim) string { return nsName(c.Namespace, c.Name) },
		func(x, y snapshot.Claim) []fieldChange {
			return field(field(nil, "phase", x.Phase, y.Phase), "capacity", x.Capacity, y.Capacity)
		}))
	keys := func(x, y snapshot.KeySet) []fieldChange {
		return field(nil, "keys", strings.Join(x.Keys, ", "), strings.Join(y.Keys, ", "))
	}
	d.Sections = append(d.Sections, diffKeyed("Config maps", a.ConfigMaps, b.ConfigMaps,
		func(k snapshot.KeySet) string { return k.UID }, func(k snapshot.KeySet) string { return nsName(k.Namespace, k.Name) }, keys))
	d.Sections = append(d.Sections, diffKeyed("Secrets", a.Secrets, b.Secrets,
		func(k snapshot.KeySet) string { return k.UID }, func(k snapshot.KeySet) string { return nsName(k.Namespace, k.Name) }, keys))
	d.Sections = append(d.Sections, diffKeyed("Warnings", a.Warnings, b.Warnings,
		func(w snapshot.Warning) string { return w.ID }, func(w snapshot.Warning) string { return w.ID },
		func(x, y snapshot.Warning) []fieldChange { return field(nil, "count", num(x.Count), num(y.Count)) }))
}

// shortID is an ID as docker ps shows it: 12 hex digits, without sha256:.
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

type diffPage struct {
	base
	Env                     envRow
	From, To                pointView
	Diff                    snapDiff
	Added, Removed, Changed int
	Points                  []historyRow // to pick other points
}

// pointView is one end of a diff.
type pointView struct {
	Seq         uint64
	When, Title string
	Summary     string
}

// handleDiff shows what changed on an environment between two points of
// its snapshot history: ?from=SEQ&to=SEQ (to defaults to the latest).
func (h *handler) handleDiff(w http.ResponseWriter, r *http.Request, user string) {
	env, ok := h.envFromPath(w, r, user)
	if !ok {
		return
	}
	hist, err := h.b.History(env.ID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		h.internalError(w, r, user, fmt.Sprintf("read the snapshot history of environment %d", env.ID), err)
		return
	}
	back := fmt.Sprintf("/environments/%d?tab=history", env.ID)
	bad := func(msg string) {
		h.renderErrorBack(w, user, http.StatusBadRequest, "Cannot compare", msg, back, "the history")
	}
	if len(hist) == 0 {
		bad("This environment has no snapshot history yet.")
		return
	}
	seqOf := func(name string, def uint64) (uint64, bool) {
		s := r.URL.Query().Get(name)
		if s == "" {
			return def, true
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			bad(fmt.Sprintf("%s=%q is not a sequence number: pick two points in the history.", name, s))
			return 0, false
		}
		return n, true
	}
	to, ok := seqOf("to", hist[len(hist)-1].Seq)
	if !ok {
		return
	}
	from, ok := seqOf("from", 0)
	if !ok {
		return
	}
	if from == 0 {
		bad("Pick the point to compare from.")
		return
	}
	if from > to {
		from, to = to, from
	}
	now := h.now()
	scope := h.scoper(user, env.ID)
	load := func(seq uint64) (*Snapshot, pointView, bool) {
		sn, err := h.b.SnapshotAt(env.ID, seq)
		if err == nil {
			sn, _, err = scope.cut(sn)
		}
		if errors.Is(err, ErrNotFound) {
			bad(fmt.Sprintf("The history no longer holds what it takes to rebuild seq %d: older points are dropped as new ones arrive.", seq))
			return nil, pointView{}, false
		} else if err != nil {
			h.internalError(w, r, user, fmt.Sprintf("rebuild seq %d of environment %d", seq, env.ID), err)
			return nil, pointView{}, false
		}
		pv := pointView{Seq: seq, When: ago(sn.Updated, now), Title: absTime(sn.Updated)}
		pv.Summary = newSnapView(sn, nil, now).Summary
		return sn, pv, true
	}
	a, av, ok := load(from)
	if !ok {
		return
	}
	b, bv, ok := load(to)
	if !ok {
		return
	}
	p := diffPage{base: h.base(env.Name+": changes", user, "environments"), Env: newEnvRow(env, now), From: av, To: bv,
		Diff: diffSnapshots(a.Docker, b.Docker)}
	p.Added, p.Removed, p.Changed = p.Diff.Counts()
	h.render(w, http.StatusOK, "diff", p)
}
