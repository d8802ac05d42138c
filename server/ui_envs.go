package server

import (
	"errors"
	"slices"

	"outpost/protocol"
	"outpost/server/store"
	"outpost/web"
)

// Adding, changing and deleting environments from the web UI: the API's own
// functions, with the form's fields.

func (b uiBackend) CreateEnvironment(a web.Actor, n web.NewEnvironment) (web.CreatedEnvironment, error) {
	req := newEnvironment{Name: n.Name, Mode: n.Mode, Frequencies: &protocol.Frequencies{Ping: n.Ping, Snapshot: n.Snapshot, Command: n.Command}}
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
	return web.CreatedEnvironment{ID: ans.ID, Name: ans.Name, Mode: ans.Mode, EdgeKey: ans.EdgeKey, DockerRun: ans.DockerRun, Warnings: ans.Warnings}, nil
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
