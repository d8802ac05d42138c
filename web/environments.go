package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"outpost/snapshot"
)

// statusOrder is the order statuses are counted and filtered in.
var statusOrder = []string{"online", "offline", "never"}

func statusText(s string) string {
	if s == "never" {
		return "never checked in"
	}
	return s
}

// envRow is one line of the environments table.
type envRow struct {
	ID                 uint64
	Name, Mode, Status string
	StatusText         string
	LastCheckIn        string
	LastCheckInTitle   string
	Ping, Snap, Cmd    string
	AgentVersion       string
	Hostname           string
	Platform           string // docker, kubernetes
	Tags               []string
	Group              string
	EdgeID             string
	SnapAge, SnapTitle string
	SnapStale          bool // older than two snapshot intervals
}

type statusCount struct {
	Status, Text string
	N            int
	URL          string // the list filtered to it
}

type envListPage struct {
	base
	Rows     []envRow
	All      int // environments in all
	Counts   []statusCount
	Query    string // name filter
	Status   string // status filter; "" is all
	Mode     string
	Tag      uint64
	Group    uint64
	Statuses []string
	Tags     []Option
	Groups   []Option
	Sort     map[string]sortLink
	Pager    pager
	Filtered bool
	Host     string // for the empty state's example
	Notice   string // what the action that led here did
	Top      topUsageView
}

// envPerPage is the environments list's page size.
const envPerPage = 50

// envSorts are the columns the list sorts on, as the fleet index does.
var envSorts = []string{"id", "name", "lastCheckIn"}

func newEnvRow(e Environment, now time.Time) envRow {
	r := envRow{
		ID: e.ID, Name: e.Name, Mode: e.Mode, Status: e.Status, StatusText: statusText(e.Status),
		LastCheckIn: ago(e.LastCheckIn, now), LastCheckInTitle: absTime(e.LastCheckIn),
		Ping: every(e.Ping), Snap: every(e.Snapshot), Cmd: every(e.Command),
		AgentVersion: e.AgentVersion, Hostname: e.Hostname, Platform: e.Platform, Tags: e.Tags, Group: e.Group, EdgeID: e.EdgeID,
	}
	if !e.SnapshotAt.IsZero() {
		r.SnapAge, r.SnapTitle = ago(e.SnapshotAt, now), absTime(e.SnapshotAt)
		r.SnapStale = e.Snapshot > 0 && now.Sub(e.SnapshotAt) > 2*e.Snapshot
	}
	return r
}

// uintParam reads an ID parameter; anything else is 0 (no filter).
func uintParam(v url.Values, name string) uint64 {
	n, _ := strconv.ParseUint(v.Get(name), 10, 64)
	return n
}

func (h *handler) handleEnvironments(w http.ResponseWriter, r *http.Request, user string) {
	v := r.URL.Query()
	q := EnvQuery{Name: strings.TrimSpace(v.Get("q")), Status: v.Get("status"), Mode: v.Get("mode"),
		Tag: uintParam(v, "tag"), Group: uintParam(v, "group"), Limit: envPerPage}
	if !slices.Contains(statusOrder, q.Status) {
		q.Status = ""
	}
	if q.Mode != "async" && q.Mode != "standard" {
		q.Mode = ""
	}
	q.Sort = strings.TrimPrefix(v.Get("sort"), "-")
	q.Desc = strings.HasPrefix(v.Get("sort"), "-")
	if !slices.Contains(envSorts, q.Sort) {
		q.Sort, q.Desc = "id", false
	}
	page := pageOf(v)
	q.Offset = (page - 1) * envPerPage
	ep, err := h.b.EnvironmentPage(q)
	if err != nil {
		h.internalError(w, r, user, "read the environments", err)
		return
	}
	tags, err := h.b.Tags()
	if err != nil {
		h.internalError(w, r, user, "read the tags", err)
		return
	}
	groups, err := h.b.EnvGroups()
	if err != nil {
		h.internalError(w, r, user, "read the environment groups", err)
		return
	}
	filters := url.Values{}
	for k, val := range map[string]string{"q": q.Name, "status": q.Status, "mode": q.Mode} {
		if val != "" {
			filters.Set(k, val)
		}
	}
	if q.Tag != 0 {
		filters.Set("tag", strconv.FormatUint(q.Tag, 10))
	}
	if q.Group != 0 {
		filters.Set("group", strconv.FormatUint(q.Group, 10))
	}
	keep := url.Values{}
	for k, vs := range filters {
		keep[k] = vs
	}
	if q.Sort != "id" || q.Desc {
		keep.Set("sort", map[bool]string{true: "-", false: ""}[q.Desc]+q.Sort)
	}
	p := envListPage{base: h.base("Environments", user, "environments"), Query: q.Name, Status: q.Status, Mode: q.Mode,
		Tag: q.Tag, Group: q.Group, Statuses: statusOrder, Tags: tags, Groups: groups, Host: r.Host,
		Pager: newPager("/environments", keep, page, envPerPage, ep.Total), Sort: map[string]sortLink{},
		Filtered: len(filters) > 0, Notice: takeFlash(w, r)}
	for _, s := range statusOrder {
		p.All += ep.Counts[s]
		p.Counts = append(p.Counts, statusCount{Status: s, Text: statusText(s), N: ep.Counts[s], URL: "/environments?status=" + s})
	}
	for _, k := range envSorts {
		p.Sort[k] = newSortLink("/environments", filters, k, q.Sort, q.Desc)
	}
	top, err := h.b.TopUsage(5)
	if err != nil {
		h.internalError(w, r, user, "read the data usage", err)
		return
	}
	p.Top = newTopUsage(top)
	now := h.now()
	for _, e := range ep.Items {
		p.Rows = append(p.Rows, newEnvRow(e, now))
	}
	h.render(w, http.StatusOK, "environments", p)
}

// tabs of the environment page, in order; the first is the default.
var tabs = []struct{ id, label string }{
	{"containers", "Containers"},
	{"images", "Images"},
	{"volumes", "Volumes"},
	{"networks", "Networks"},
	{"projects", "Compose"},
	{"history", "History"},
	{"commands", "Commands"},
}

type tabLink struct {
	ID, Label string
	N         int
	Current   bool
	URL       string
}

type envPage struct {
	base
	Env        envRow
	EdgeID     string
	EdgeKey    string
	Snap       *snapView // nil when the agent has not sent one
	NoSnapshot string    // why there is none, when Snap is nil
	Tab        string
	Tabs       []tabLink
	History    historyView
	// Past: the snapshot shown is an earlier point of the history, not the
	// latest (seq Latest).
	Past   bool
	Latest uint64
	Saved  bool // just edited
	Usage  usageView
	// Commands is the commands tab, when it is the one shown.
	Commands *commandsView
	// Access is the access tab of a cluster, when it is the one shown.
	Access *accessView
	Notice string
}

// envFromPath reads the environment the path names, answering the error
// page itself when there is none.
func (h *handler) envFromPath(w http.ResponseWriter, r *http.Request, user string) (Environment, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		h.renderError(w, user, http.StatusNotFound, "Environment not found",
			fmt.Sprintf("%q is not an environment ID. Pick one from the list.", r.PathValue("id")))
		return Environment{}, false
	}
	env, err := h.b.Environment(id)
	if errors.Is(err, ErrNotFound) {
		h.renderError(w, user, http.StatusNotFound, "Environment not found",
			fmt.Sprintf("There is no environment %d. It may have been deleted; pick one from the list.", id))
		return Environment{}, false
	} else if err != nil {
		h.internalError(w, r, user, fmt.Sprintf("read environment %d", id), err)
		return Environment{}, false
	}
	return env, true
}

func (h *handler) handleEnvironment(w http.ResponseWriter, r *http.Request, user string) {
	env, ok := h.envFromPath(w, r, user)
	if !ok {
		return
	}
	id := env.ID
	now := h.now()
	p := envPage{base: h.base(env.Name, user, "environments"), Env: newEnvRow(env, now), EdgeID: env.EdgeID, EdgeKey: env.EdgeKey,
		Saved: r.URL.Query().Get("saved") != ""}

	days, err := h.b.Usage(id)
	if err != nil {
		h.internalError(w, r, user, fmt.Sprintf("read the data usage of environment %d", id), err)
		return
	}
	p.Usage = newUsageView(days)
	snap, err := h.b.Snapshot(id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		h.internalError(w, r, user, fmt.Sprintf("read the snapshot of environment %d", id), err)
		return
	}
	hist, err := h.b.History(id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		h.internalError(w, r, user, fmt.Sprintf("read the snapshot history of environment %d", id), err)
		return
	}
	if snap == nil || snap.Docker == nil {
		p.NoSnapshot = noSnapshotReason(env)
		h.render(w, http.StatusOK, "environment", p)
		return
	}
	if at := r.URL.Query().Get("at"); at != "" {
		seq, err := strconv.ParseUint(at, 10, 64)
		if err != nil {
			h.renderErrorBack(w, user, http.StatusBadRequest, "No such point", fmt.Sprintf("at=%q is not a sequence number: pick a point in the history.", at),
				fmt.Sprintf("/environments/%d?tab=history", id), "the history")
			return
		}
		if seq != snap.Seq {
			past, err := h.b.SnapshotAt(id, seq)
			if errors.Is(err, ErrNotFound) {
				h.renderErrorBack(w, user, http.StatusNotFound, "No such point",
					fmt.Sprintf("The history no longer holds what it takes to show seq %d: older points are dropped as new ones arrive.", seq),
					fmt.Sprintf("/environments/%d?tab=history", id), "the history")
				return
			} else if err != nil {
				h.internalError(w, r, user, fmt.Sprintf("rebuild seq %d of environment %d", seq, id), err)
				return
			}
			p.Past, p.Latest = true, snap.Seq
			snap = past
		}
	}
	snap, role, err := h.scoper(user, id).cut(snap)
	if err != nil {
		h.internalError(w, r, user, fmt.Sprintf("read the access of %s to environment %d", user, id), err)
		return
	}
	p.Snap = newSnapView(snap, hist, now)
	p.Snap.Stale = !p.Past && env.Snapshot > 0 && now.Sub(snap.Updated) > 2*env.Snapshot
	p.History = newHistoryView(hist, now)
	p.History.Current, p.History.EnvID = snap.Seq, id
	pageTabs := tabs
	if p.Snap.Kube != nil {
		pageTabs = slices.DeleteFunc(slices.Clone(kubeTabs), func(t struct{ id, label string }) bool {
			return (t.id == "access" && !h.b.Can(user, ActKubeAccess)) || !kubeTabAllowed(role, t.id)
		})
	}
	p.Tab = r.URL.Query().Get("tab")
	if !slices.ContainsFunc(pageTabs, func(t struct{ id, label string }) bool { return t.id == p.Tab }) {
		p.Tab = pageTabs[0].id
	}
	p.Snap.EnvID, p.Snap.CanAct = id, p.CanWrite && !p.Past
	log, err := h.b.CommandLog(id)
	if err != nil {
		h.internalError(w, r, user, fmt.Sprintf("read the command log of environment %d", id), err)
		return
	}
	if p.Tab == "access" {
		a, err := h.b.NamespaceAccess(id)
		if err != nil {
			h.internalError(w, r, user, fmt.Sprintf("read the namespace access of environment %d", id), err)
			return
		}
		var names []string
		for _, n := range snap.Docker.Namespaces {
			names = append(names, n.Name)
		}
		p.Access = newAccessView(id, names, a)
		p.Notice = takeFlash(w, r)
	}
	if p.Tab == "commands" {
		cv := newCommandsView(env, log, now, targetNames(snap))
		cv.CanWrite = p.CanWrite
		cv.Queued = uintParam(r.URL.Query(), "queued")
		p.Commands = &cv
		if len(log.Pending) > 0 {
			p.Refresh = 5 // the result shows up without a click; no script needed
		}
	}
	counts := map[string]int{
		"containers": len(p.Snap.Containers), "images": len(p.Snap.Images), "volumes": len(p.Snap.Volumes),
		"networks": len(p.Snap.Networks), "projects": len(p.Snap.Projects), "history": len(hist), "commands": len(log.Pending),
	}
	if p.Snap.Kube != nil {
		counts = kubeCounts(snap.Docker)
		counts["history"], counts["commands"] = len(hist), len(log.Pending)
	}
	for _, t := range pageTabs {
		l := tabLink{ID: t.id, Label: t.label, N: counts[t.id], Current: t.id == p.Tab, URL: fmt.Sprintf("/environments/%d?tab=%s", id, t.id)}
		if p.Past && t.id != "history" && t.id != "commands" {
			l.URL += fmt.Sprintf("&at=%d", snap.Seq)
		}
		p.Tabs = append(p.Tabs, l)
	}
	if p.Past {
		p.Snap.AtSeq = snap.Seq
	}
	if c := r.URL.Query().Get("container"); c != "" && p.Tab == "containers" {
		// By ID, which the page links with; a name only when no ID is
		// it, as a device may name one container after another's ID.
		cs := snap.Docker.Containers
		i := slices.IndexFunc(cs, func(ct snapshot.Container) bool { return ct.ID == c })
		if i < 0 {
			i = slices.IndexFunc(cs, func(ct snapshot.Container) bool { return ct.Name == c })
		}
		if i >= 0 {
			p.Snap.Detail = newContainerDetail(cs[i], now)
		}
		if p.Snap.Detail == nil {
			p.Snap.NoContainer = c
		}
	}
	h.render(w, http.StatusOK, "environment", p)
}

// noSnapshotReason tells the user why there is nothing to show yet and what
// happens next.
func noSnapshotReason(e Environment) string {
	switch {
	case e.Status == "never":
		return "No agent has checked in yet. Start one on the device with the edge key above; its first snapshot follows its first check-in."
	case e.Mode == "standard":
		return "The agent has not sent a snapshot yet. A standard agent sends one on first contact; it should arrive within a poll interval."
	default:
		return fmt.Sprintf("The agent has not sent a snapshot yet. It sends one every %s, so the first should arrive within that time of its first check-in.", every(e.Snapshot))
	}
}
