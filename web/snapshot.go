package web

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"outpost/snapshot"
)

// Compose labels the UI reads; the same names as the snapshot collector's.
const (
	labelProject = snapshot.LabelProject
	labelService = snapshot.LabelService
)

type fact struct{ Label, Value string }

type stateCount struct {
	State string
	N     int
}

type containerRow struct {
	ID, Name          string
	State, Health     string
	Image             string
	Status            string
	StatusTitle       string
	Ports             []string
	Project, Service  string
	ExitedWithFailure bool
}

type imageRow struct {
	ID      string
	Tags    []string
	Size    string
	Created string
	Title   string
	UsedBy  int
}

type volumeRow struct {
	Name, Driver, Project string
	Created, Title        string
	UsedBy                []string
}

type networkRow struct {
	ID, Name, Driver, Scope string
	Subnets                 []string
	Internal                bool
	Containers              int
}

type projectRow struct {
	Name, WorkingDir, ConfigFiles string
	Services                      []string
	Running, Total                int
}

type snapView struct {
	Seq          uint64
	Updated      string
	UpdatedTitle string
	Arrived      string // how the latest change came: "a full snapshot", "a delta from seq 41"
	Engine       []fact
	Summary      string
	States       []stateCount
	StateBar     chart
	Containers   []containerRow
	Images       []imageRow
	Volumes      []volumeRow
	Networks     []networkRow
	Projects     []projectRow
	ImageBytes   string
	Stale        bool   // older than two of the device's snapshot intervals
	AtSeq        uint64 // the seq when this is a past point, for links that stay on it
	EnvID        uint64
	CanAct       bool // the user may queue commands, and this is the latest snapshot
	// Detail is the one container opened from the list; NoContainer names
	// one asked for that this snapshot does not have.
	Detail      *containerDetail
	NoContainer string
	// Kube is the cluster's sections, for a Kubernetes snapshot.
	Kube *kubeView
}

// containerDetail is everything the snapshot knows about one container.
type containerDetail struct {
	Name, ID       string
	State, Health  string
	Image, ImageID string
	Command        string
	Status         string
	Times          []fact
	Restart        string
	ExitCode       int
	Exited         bool
	Ports          []string
	Mounts         []string
	Networks       []string
	Labels         []fact
}

func newContainerDetail(c snapshot.Container, now time.Time) *containerDetail {
	d := &containerDetail{Name: cmp.Or(c.Name, c.ID), ID: c.ID, State: c.State.String(), Health: healthText(c.Health),
		Image: c.Image, ImageID: c.ImageID, Command: c.Command, Status: containerStatus(c, now), Restart: c.Restart,
		ExitCode: c.ExitCode, Exited: c.State == snapshot.StateExited, Ports: ports(c.Ports), Networks: c.Networks}
	for _, t := range []struct {
		name string
		at   int64
	}{{"Created", c.Created}, {"Started", c.Started}, {"Finished", c.Finished}} {
		if t.at != 0 {
			d.Times = append(d.Times, fact{t.name, absTime(unix(t.at)) + " (" + ago(unix(t.at), now) + ")"})
		}
	}
	for _, m := range c.Mounts {
		s := fmt.Sprintf("%s %s → %s", cmp.Or(m.Type, "mount"), m.Source, m.Destination)
		if m.ReadOnly {
			s += " (read-only)"
		}
		d.Mounts = append(d.Mounts, s)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Labels)) {
		d.Labels = append(d.Labels, fact{k, c.Labels[k]})
	}
	return d
}

func newSnapView(s *Snapshot, hist []HistoryEntry, now time.Time) *snapView {
	d := s.Docker
	v := &snapView{Seq: s.Seq, Updated: ago(s.Updated, now), UpdatedTitle: absTime(s.Updated)}
	v.Arrived = "a full snapshot"
	if s.Kind == "delta" {
		v.Arrived = "a delta"
		for _, h := range hist {
			if h.Seq == s.Seq && h.Base != 0 {
				v.Arrived = fmt.Sprintf("a delta from seq %d", h.Base)
			}
		}
	}
	if isKube(d) {
		v.Engine, v.Kube = clusterFacts(d), newKubeView(d, now)
		v.Summary = v.Kube.Summary
		return v
	}
	v.Engine = engineFacts(d.Engine)

	byState := map[snapshot.State]int{}
	usedImage := map[string]int{}
	volumeUsers := map[string][]string{}
	netUsers := map[string]int{}
	projRunning, projTotal := map[string]int{}, map[string]int{}
	for _, c := range d.Containers {
		byState[c.State]++
		usedImage[c.ImageID]++
		for _, m := range c.Mounts {
			if m.Type == "volume" {
				volumeUsers[m.Source] = append(volumeUsers[m.Source], c.Name)
			}
		}
		for _, n := range c.Networks {
			netUsers[n]++
		}
		if p := c.Labels[labelProject]; p != "" {
			projTotal[p]++
			if c.State == snapshot.StateRunning {
				projRunning[p]++
			}
		}
		row := containerRow{
			ID: c.ID, Name: c.Name, State: c.State.String(), Image: c.Image,
			Status: containerStatus(c, now), Ports: ports(c.Ports),
			Project: c.Labels[labelProject], Service: c.Labels[labelService],
			ExitedWithFailure: c.State == snapshot.StateExited && c.ExitCode != 0,
		}
		if row.Name == "" {
			row.Name = c.ID
		}
		if c.Health != snapshot.HealthNone {
			row.Health = c.Health.String()
		}
		row.StatusTitle = containerTimes(c)
		v.Containers = append(v.Containers, row)
	}
	slices.SortFunc(v.Containers, func(a, b containerRow) int { return cmp.Compare(a.Name, b.Name) })

	// States in the model's order, running first, so the bar and the summary
	// read the same way on every page.
	order := []snapshot.State{snapshot.StateRunning, snapshot.StateRestarting, snapshot.StatePaused,
		snapshot.StateCreated, snapshot.StateExited, snapshot.StateDead, snapshot.StateRemoving, snapshot.StateUnknown}
	var parts []string
	for _, st := range order {
		if n := byState[st]; n > 0 {
			v.States = append(v.States, stateCount{State: st.String(), N: n})
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	v.Summary = plural(len(d.Containers), "container", "containers")
	if len(parts) > 0 {
		v.Summary += ": " + strings.Join(parts, ", ")
	}
	v.StateBar = stateBar(v.States)

	var imageBytes int64
	for _, im := range d.Images {
		imageBytes += im.Size
		created := unix(im.Created)
		row := imageRow{ID: im.ID, Tags: im.Tags, Size: humanSize(im.Size), Title: absTime(created), UsedBy: usedImage[im.ID]}
		if !created.IsZero() {
			row.Created = humanDuration(now.Sub(created)) + " ago"
		}
		v.Images = append(v.Images, row)
	}
	v.ImageBytes = humanSize(imageBytes)
	slices.SortFunc(v.Images, func(a, b imageRow) int {
		// Tagged images by tag, untagged ones last.
		if (len(a.Tags) == 0) != (len(b.Tags) == 0) {
			if len(a.Tags) == 0 {
				return 1
			}
			return -1
		}
		if len(a.Tags) > 0 {
			if c := cmp.Compare(a.Tags[0], b.Tags[0]); c != 0 {
				return c
			}
		}
		return cmp.Compare(a.ID, b.ID)
	})

	for _, vol := range d.Volumes {
		created := unix(vol.Created)
		row := volumeRow{Name: vol.Name, Driver: cmp.Or(vol.Driver, "local"), Project: vol.Labels[labelProject],
			Title: absTime(created), UsedBy: volumeUsers[vol.Name]}
		if !created.IsZero() {
			row.Created = humanDuration(now.Sub(created)) + " ago"
		}
		slices.Sort(row.UsedBy)
		v.Volumes = append(v.Volumes, row)
	}

	for _, n := range d.Networks {
		v.Networks = append(v.Networks, networkRow{ID: n.ID, Name: n.Name, Driver: n.Driver, Scope: n.Scope,
			Subnets: n.Subnets, Internal: n.Internal, Containers: netUsers[n.Name]})
	}
	slices.SortFunc(v.Networks, func(a, b networkRow) int { return cmp.Compare(a.Name, b.Name) })

	for _, p := range d.Projects {
		v.Projects = append(v.Projects, projectRow{Name: p.Name, WorkingDir: p.WorkingDir, ConfigFiles: p.ConfigFiles,
			Services: p.Services, Running: projRunning[p.Name], Total: projTotal[p.Name]})
	}
	return v
}

// containerTimes is the tooltip of a container's status: its absolute times.
func containerTimes(c snapshot.Container) string {
	var parts []string
	for _, t := range []struct {
		name string
		at   int64
	}{{"created", c.Created}, {"started", c.Started}, {"finished", c.Finished}} {
		if t.at != 0 {
			parts = append(parts, t.name+" "+absTime(unix(t.at)))
		}
	}
	if c.Restart != "" {
		parts = append(parts, "restart policy "+c.Restart)
	}
	return strings.Join(parts, "; ")
}

func engineFacts(e snapshot.Engine) []fact {
	var out []fact
	add := func(label, value string) {
		if value != "" {
			out = append(out, fact{label, value})
		}
	}
	add("Hostname", e.Hostname)
	docker := e.ServerVersion
	if e.APIVersion != "" {
		docker += " (API " + e.APIVersion + ")"
	}
	add("Docker", strings.TrimSpace(docker))
	add("OS", e.OS)
	add("Kernel", e.Kernel)
	add("Arch", e.Arch)
	if e.CPUs > 0 {
		add("CPUs", strconv.Itoa(e.CPUs))
	}
	if e.Memory > 0 {
		add("Memory", humanMemory(e.Memory))
	}
	add("Storage", e.StorageDriver)
	if e.Swarm {
		add("Swarm", "active")
	}
	return out
}
