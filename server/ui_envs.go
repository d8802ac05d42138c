package server

import (
	"cmp"
	"errors"
	"net/http"
	"slices"
	"time"

	"outpost/protocol"
	"outpost/server/store"
	"outpost/usage"
	"outpost/web"
)

// Adding, changing and deleting environments from the web UI: the API's own
// functions, with the form's fields.

func (b uiBackend) CreateEnvironment(a web.Actor, n web.NewEnvironment) (web.CreatedEnvironment, error) {
	req := newEnvironment{Name: n.Name, Mode: n.Mode, Platform: n.Platform, Frequencies: &protocol.Frequencies{Ping: n.Ping, Snapshot: n.Snapshot, Command: n.Command}}
	// Tags and group are checked before anything is stored, so a refused
	// form leaves no environment behind.
	if p := b.checkTagsAndGroup(n.Tags, n.Group); len(p) > 0 {
		return web.CreatedEnvironment{}, &web.FormError{Problems: p}
	}
	ans, problems, err := b.s.createEnvironment(a.Remote, a.User, req)
	if len(problems) > 0 {
		return web.CreatedEnvironment{}, &web.FormError{Problems: problems}
	}
	if err != nil {
		return web.CreatedEnvironment{}, err
	}
	if len(n.Tags) > 0 || n.Group != 0 {
		tags, group := n.Tags, n.Group
		if _, p, err := b.s.patchEnvironment(a.Remote, a.User, ans.ID, environmentPatch{TagIDs: &tags, GroupID: &group}); err != nil || len(p) > 0 {
			return web.CreatedEnvironment{}, errors.Join(err, &web.FormError{Problems: p})
		}
	}
	return web.CreatedEnvironment{ID: ans.ID, Name: ans.Name, Mode: ans.Mode, EdgeKey: ans.EdgeKey, DockerRun: ans.DockerRun,
		KubernetesManifest: ans.KubernetesManifest, Warnings: ans.Warnings}, nil
}

// checkTagsAndGroup names the tags and the environment group that do not
// exist.
func (b uiBackend) checkTagsAndGroup(tags []uint64, group uint64) []string {
	f := b.s.fleetIndex()
	f.mu.RLock()
	defer f.mu.RUnlock()
	p := unknownIDs("tagIds", "tags", tags, f.tags)
	if _, ok := f.envGroups[group]; group != 0 && !ok {
		p = append(p, "the environment group chosen no longer exists")
	}
	return p
}

func (b uiBackend) UpdateEnvironment(a web.Actor, id uint64, u web.EnvUpdate) error {
	fr := protocol.Frequencies{Ping: u.Ping, Snapshot: u.Snapshot, Command: u.Command}
	tags, group := slices.Clone(u.Tags), u.Group
	if tags == nil {
		tags = []uint64{}
	}
	_, problems, err := b.s.patchEnvironment(a.Remote, a.User, id, environmentPatch{Name: &u.Name, Frequencies: &fr, TagIDs: &tags, GroupID: &group})
	if len(problems) > 0 {
		return &web.FormError{Problems: problems}
	}
	return uiErr(err)
}

func (b uiBackend) DeleteImpact(id uint64) (web.DeleteImpact, error) {
	s := b.s
	e, err := s.store.Environment(id)
	if err != nil {
		return web.DeleteImpact{}, uiErr(err)
	}
	out := web.DeleteImpact{EdgeID: e.EdgeID}
	hist, err := s.store.History(id)
	if err != nil {
		return out, err
	}
	out.HistoryEntries = len(hist)
	pending, err := s.store.PendingCommands(id, store.ResultsLimit)
	if err != nil {
		return out, err
	}
	out.PendingCommands = len(pending)
	stacks, err := s.store.Stacks()
	if err != nil {
		return out, err
	}
	statuses, err := s.store.StackStatuses(0)
	if err != nil {
		return out, err
	}
	has := map[uint64]bool{}
	for _, x := range statuses {
		if x.Env == id {
			has[x.Stack] = true
		}
	}
	for _, st := range stacks {
		in := has[st.ID]
		for _, g := range st.EdgeGroupIDs {
			in = in || slices.Contains(s.edgeGroupMembers(g), id)
		}
		if in {
			out.Stacks = append(out.Stacks, st.Name)
		}
	}
	return out, nil
}

func (b uiBackend) DeleteEnvironment(a web.Actor, id uint64) error {
	return uiErr(b.s.deleteEnvironment(a.Remote, a.User, id))
}

// usageDays is how many days the environment page's chart shows, and
// topUsageDays how many the fleet's top list sums.
const (
	usageDays    = 30
	topUsageDays = 7
)

func (b uiBackend) Usage(env uint64) ([]web.UsageDay, error) {
	today := usage.DayOf(b.s.now())
	stored, err := b.s.store.Usage(env, today-usageDays+1, today)
	if err != nil {
		return nil, err
	}
	out := make([]web.UsageDay, 0, usageDays)
	for day := today - usageDays + 1; day <= today; day++ {
		d := stored[day].Add(b.s.usage.Pending(usage.Key{Env: env, Day: day}))
		out = append(out, web.UsageDay{Day: usage.Date(day), In: d.In, Out: d.Out, Exchanges: d.Exchanges, Total: d.Total()})
	}
	return out, nil
}

// TopUsage sums the last week from the store (what is not flushed yet
// waits for the next flush), at most once a minute: a pass over a week of
// the whole fleet.
func (b uiBackend) TopUsage(n int) ([]web.UsageRow, error) {
	s := b.s
	now := s.now()
	c := &s.topUsage
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rows == nil || now.Sub(c.at) >= time.Minute {
		sums, err := s.store.UsageSince(usage.DayOf(now) - topUsageDays + 1)
		if err != nil {
			return nil, err
		}
		rows := make([]web.UsageRow, 0, len(sums))
		f := s.fleetIndex()
		f.mu.RLock()
		for env, d := range sums {
			if e := f.envs[env]; e != nil { // deleted ones are left out
				rows = append(rows, web.UsageRow{EnvID: env, Name: e.name, Total: d.Total(), Exchanges: d.Exchanges})
			}
		}
		f.mu.RUnlock()
		slices.SortFunc(rows, func(a, b web.UsageRow) int {
			return cmp.Or(cmp.Compare(b.Total, a.Total), cmp.Compare(a.EnvID, b.EnvID))
		})
		c.rows, c.at = rows[:min(len(rows), 20)], now
	}
	return slices.Clone(c.rows[:min(n, len(c.rows))]), nil
}

// handleUsage serves GET /api/environments/{id}/usage: the last 30 days of
// what the device's exchanges cost on the wire, oldest first.
func (s *Server) handleUsage(w http.ResponseWriter, r *http.Request, _ session) {
	e, ok := s.envFromPath(w, r)
	if !ok {
		return
	}
	days, err := uiBackend{s}.Usage(e.ID)
	if err != nil {
		s.apiInternal(w, "read the data usage", err)
		return
	}
	type day struct {
		Day       string `json:"day"`
		In        uint64 `json:"in"`
		Out       uint64 `json:"out"`
		Exchanges uint64 `json:"exchanges"`
		Total     uint64 `json:"total"`
	}
	out := make([]day, 0, len(days))
	for _, d := range days {
		out = append(out, day{Day: d.Day.Format("2006-01-02"), In: d.In, Out: d.Out, Exchanges: d.Exchanges, Total: d.Total})
	}
	writeJSON(w, http.StatusOK, map[string]any{"days": out, "overheadPerExchange": usage.Overhead})
}
