package web

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
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
}

type statusCount struct {
	Status, Text string
	N            int
}

type envListPage struct {
	base
	Rows     []envRow
	Total    int
	Counts   []statusCount
	Query    string // name filter
	Status   string // status filter; "" is all
	Statuses []string
	Host     string // for the empty state's example
}

func newEnvRow(e Environment, now time.Time) envRow {
	return envRow{
		ID: e.ID, Name: e.Name, Mode: e.Mode, Status: e.Status, StatusText: statusText(e.Status),
		LastCheckIn: ago(e.LastCheckIn, now), LastCheckInTitle: absTime(e.LastCheckIn),
		Ping: every(e.Ping), Snap: every(e.Snapshot), Cmd: every(e.Command),
		AgentVersion: e.AgentVersion, Hostname: e.Hostname,
	}
}

func (h *handler) handleEnvironments(w http.ResponseWriter, r *http.Request, user string) {
	envs, err := h.b.Environments()
	if err != nil {
		h.internalError(w, r, user, "read the environments", err)
		return
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	status := r.URL.Query().Get("status")
	if !slices.Contains(statusOrder, status) {
		status = ""
	}
	p := envListPage{base: h.base("Environments", user, "environments"), Total: len(envs),
		Query: q, Status: status, Statuses: statusOrder, Host: r.Host}
	n := map[string]int{}
	now := h.now()
	for _, e := range envs {
		n[e.Status]++
		if status != "" && e.Status != status {
			continue
		}
		if q != "" && !strings.Contains(strings.ToLower(e.Name), strings.ToLower(q)) &&
			!strings.Contains(strings.ToLower(e.Hostname), strings.ToLower(q)) {
			continue
		}
		p.Rows = append(p.Rows, newEnvRow(e, now))
	}
	for _, s := range statusOrder {
		p.Counts = append(p.Counts, statusCount{Status: s, Text: statusText(s), N: n[s]})
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
}

type tabLink struct {
	ID, Label string
	N         int
	Current   bool
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
}

func (h *handler) handleEnvironment(w http.ResponseWriter, r *http.Request, user string) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		h.renderError(w, user, http.StatusNotFound, "Environment not found",
			fmt.Sprintf("%q is not an environment ID. Pick one from the list.", r.PathValue("id")))
		return
	}
	env, err := h.b.Environment(id)
	if errors.Is(err, ErrNotFound) {
		h.renderError(w, user, http.StatusNotFound, "Environment not found",
			fmt.Sprintf("There is no environment %d. It may have been deleted; pick one from the list.", id))
		return
	} else if err != nil {
		h.internalError(w, r, user, fmt.Sprintf("read environment %d", id), err)
		return
	}
	now := h.now()
	p := envPage{base: h.base(env.Name, user, "environments"), Env: newEnvRow(env, now), EdgeID: env.EdgeID, EdgeKey: env.EdgeKey}

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

	p.Snap = newSnapView(snap, hist, now)
	p.History = newHistoryView(hist, now)
	p.Tab = r.URL.Query().Get("tab")
	if !slices.ContainsFunc(tabs, func(t struct{ id, label string }) bool { return t.id == p.Tab }) {
		p.Tab = tabs[0].id
	}
	counts := map[string]int{
		"containers": len(p.Snap.Containers), "images": len(p.Snap.Images), "volumes": len(p.Snap.Volumes),
		"networks": len(p.Snap.Networks), "projects": len(p.Snap.Projects), "history": len(hist),
	}
	for _, t := range tabs {
		p.Tabs = append(p.Tabs, tabLink{ID: t.id, Label: t.label, N: counts[t.id], Current: t.id == p.Tab})
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
