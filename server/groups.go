package server

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"outpost/server/store"
)

func envGroupTarget(id uint64) string  { return "environment group " + strconv.FormatUint(id, 10) }
func edgeGroupTarget(id uint64) string { return "edge group " + strconv.FormatUint(id, 10) }

// Environment groups: /api/environment-groups. An environment is in at most
// one (its groupId, set by PATCH /api/environments/{id}).

type envGroupRequest struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

func (f *fleet) envGroupNameTaken(name string, id uint64) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, g := range f.envGroups {
		if g.ID != id && strings.EqualFold(g.Name, strings.TrimSpace(name)) {
			return true
		}
	}
	return false
}

// envGroupView is an environment group with its members.
type envGroupView struct {
	store.EnvironmentGroup
	EnvironmentIDs []uint64 `json:"environmentIds"`
}

func (s *Server) handleListEnvGroups(w http.ResponseWriter, _ *http.Request, _ session) {
	f := s.fleetIndex()
	f.mu.RLock()
	out := make([]store.EnvironmentGroup, 0, len(f.envGroups))
	for _, g := range f.envGroups {
		out = append(out, g)
	}
	f.mu.RUnlock()
	slices.SortFunc(out, func(a, b store.EnvironmentGroup) int { return cmp.Compare(a.ID, b.ID) })
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleGetEnvGroup(w http.ResponseWriter, r *http.Request, _ session) {
	id, ok := idFromPath(w, r, "environment group")
	if !ok {
		return
	}
	f := s.fleetIndex()
	f.mu.RLock()
	g, found := f.envGroups[id]
	f.mu.RUnlock()
	if !found {
		writeErr(w, http.StatusNotFound, "environment group %d not found", id)
		return
	}
	members := f.inEnvGroup(id)
	if members == nil {
		members = []uint64{}
	}
	writeJSON(w, http.StatusOK, envGroupView{EnvironmentGroup: g, EnvironmentIDs: members})
}

func (s *Server) handleCreateEnvGroup(w http.ResponseWriter, r *http.Request, ss session) {
	var req envGroupRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	f := s.fleetIndex()
	f.changeMu.Lock()
	defer f.changeMu.Unlock()
	name, problem := checkName("environment group", req.Name, f.envGroupNameTaken(req.Name, 0))
	if problem != "" {
		writeErr(w, http.StatusBadRequest, "%s", problem)
		return
	}
	g := &store.EnvironmentGroup{Name: name, Description: clip(req.Description)}
	if err := s.store.CreateEnvironmentGroup(g); err != nil {
		s.log.Error("create environment group", "err", err)
		writeErr(w, http.StatusInternalServerError, "could not store the environment group")
		return
	}
	f.putEnvGroup(*g)
	s.audit(r, ss.user, auditEnvGroupCreate, envGroupTarget(g.ID), fmt.Sprintf("name %q", g.Name))
	writeJSON(w, http.StatusCreated, g)
}

func (s *Server) handleUpdateEnvGroup(w http.ResponseWriter, r *http.Request, ss session) {
	id, ok := idFromPath(w, r, "environment group")
	if !ok {
		return
	}
	var req envGroupRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	f := s.fleetIndex()
	f.changeMu.Lock()
	defer f.changeMu.Unlock()
	name, problem := checkName("environment group", req.Name, f.envGroupNameTaken(req.Name, id))
	if problem != "" {
		writeErr(w, http.StatusBadRequest, "%s", problem)
		return
	}
	g, err := s.store.UpdateEnvironmentGroup(id, func(g *store.EnvironmentGroup) error {
		g.Name, g.Description = name, clip(req.Description)
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		writeErr(w, http.StatusNotFound, "environment group %d not found", id)
		return
	} else if err != nil {
		s.log.Error("update environment group", "err", err)
		writeErr(w, http.StatusInternalServerError, "could not store the environment group")
		return
	}
	f.putEnvGroup(*g)
	s.audit(r, ss.user, auditEnvGroupUpdate, envGroupTarget(id), fmt.Sprintf("name %q", g.Name))
	writeJSON(w, http.StatusOK, g)
}

// handleDeleteEnvGroup deletes an environment group; its environments stay,
// in no group.
func (s *Server) handleDeleteEnvGroup(w http.ResponseWriter, r *http.Request, ss session) {
	id, ok := idFromPath(w, r, "environment group")
	if !ok {
		return
	}
	f := s.fleetIndex()
	f.changeMu.Lock()
	defer f.changeMu.Unlock()
	members := f.inEnvGroup(id)
	if err := s.store.DeleteEnvironmentGroup(id, members); errors.Is(err, store.ErrNotFound) {
		writeErr(w, http.StatusNotFound, "environment group %d not found", id)
		return
	} else if err != nil {
		s.log.Error("delete environment group", "err", err)
		writeErr(w, http.StatusInternalServerError, "could not delete the environment group")
		return
	}
	f.removeEnvGroup(id)
	s.audit(r, ss.user, auditEnvGroupDelete, envGroupTarget(id), fmt.Sprintf("%d environments left without a group", len(members)))
	w.WriteHeader(http.StatusNoContent)
}

// Edge groups: /api/edge-groups.

type edgeGroupRequest struct {
	Name           string   `json:"name"`
	Dynamic        bool     `json:"dynamic"`
	EnvironmentIDs []uint64 `json:"environmentIds"`
	TagIDs         []uint64 `json:"tagIds"`
	Match          string   `json:"match"`
}

// edgeGroupView is an edge group with its members, computed (dynamic) or
// listed (static).
type edgeGroupView struct {
	store.EdgeGroup
	Members []uint64 `json:"members"`
}

// validate checks req against the index (f.mu held for reading) and returns
// the group to store, with every problem at once.
func (f *fleet) validateEdgeGroup(req edgeGroupRequest, id uint64) (store.EdgeGroup, []string) {
	var problems []string
	taken := false
	for _, g := range f.edgeGroups {
		if g.ID != id && strings.EqualFold(g.Name, strings.TrimSpace(req.Name)) {
			taken = true
		}
	}
	name, p := checkName("edge group", req.Name, taken)
	if p != "" {
		problems = append(problems, p)
	}
	g := store.EdgeGroup{ID: id, Name: name, Dynamic: req.Dynamic}
	sortIDs := func(ids []uint64) []uint64 {
		ids = slices.Clone(ids)
		slices.Sort(ids)
		return slices.Compact(ids)
	}
	if req.Dynamic {
		if len(req.EnvironmentIDs) > 0 {
			problems = append(problems, "environmentIds: a dynamic group takes its members by tags; leave it out")
		}
		if len(req.TagIDs) == 0 {
			problems = append(problems, "tagIds: a dynamic group needs at least one tag")
		}
		if bad := missing(req.TagIDs, f.tags); len(bad) > 0 {
			problems = append(problems, fmt.Sprintf("tagIds %v: no such tags", bad))
		}
		switch req.Match {
		case "":
			req.Match = store.MatchAll
		case store.MatchAll, store.MatchAny:
		default:
			problems = append(problems, fmt.Sprintf("match %q: want all or any", req.Match))
		}
		g.TagIDs, g.Match = sortIDs(req.TagIDs), req.Match
	} else {
		if len(req.TagIDs) > 0 || req.Match != "" {
			problems = append(problems, "tagIds, match: only for a dynamic group (set dynamic: true)")
		}
		if bad := missing(req.EnvironmentIDs, f.envs); len(bad) > 0 {
			problems = append(problems, fmt.Sprintf("environmentIds %v: no such environments", bad))
		}
		g.EnvironmentIDs = sortIDs(req.EnvironmentIDs)
	}
	return g, problems
}

func (s *Server) handleListEdgeGroups(w http.ResponseWriter, _ *http.Request, _ session) {
	f := s.fleetIndex()
	f.mu.RLock()
	out := make([]store.EdgeGroup, 0, len(f.edgeGroups))
	for _, g := range f.edgeGroups {
		out = append(out, g)
	}
	f.mu.RUnlock()
	slices.SortFunc(out, func(a, b store.EdgeGroup) int { return cmp.Compare(a.ID, b.ID) })
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleGetEdgeGroup(w http.ResponseWriter, r *http.Request, _ session) {
	id, ok := idFromPath(w, r, "edge group")
	if !ok {
		return
	}
	f := s.fleetIndex()
	f.mu.RLock()
	g, found := f.edgeGroups[id]
	f.mu.RUnlock()
	if !found {
		writeErr(w, http.StatusNotFound, "edge group %d not found", id)
		return
	}
	members := s.edgeGroupMembers(id)
	if members == nil {
		members = []uint64{}
	}
	writeJSON(w, http.StatusOK, edgeGroupView{EdgeGroup: g, Members: members})
}

func (s *Server) handleCreateEdgeGroup(w http.ResponseWriter, r *http.Request, ss session) {
	var req edgeGroupRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	f := s.fleetIndex()
	f.changeMu.Lock()
	defer f.changeMu.Unlock()
	f.mu.RLock()
	g, problems := f.validateEdgeGroup(req, 0)
	f.mu.RUnlock()
	if len(problems) > 0 {
		writeErr(w, http.StatusBadRequest, "%s", strings.Join(problems, "; "))
		return
	}
	if err := s.store.CreateEdgeGroup(&g); err != nil {
		s.log.Error("create edge group", "err", err)
		writeErr(w, http.StatusInternalServerError, "could not store the edge group")
		return
	}
	f.putEdgeGroup(g)
	s.audit(r, ss.user, auditEdgeGroupCreate, edgeGroupTarget(g.ID), describeEdgeGroup(&g))
	writeJSON(w, http.StatusCreated, edgeGroupView{EdgeGroup: g, Members: nonNil(s.edgeGroupMembers(g.ID))})
}

// handleUpdateEdgeGroup replaces an edge group's name and rule (or list);
// its members are recomputed at once.
func (s *Server) handleUpdateEdgeGroup(w http.ResponseWriter, r *http.Request, ss session) {
	id, ok := idFromPath(w, r, "edge group")
	if !ok {
		return
	}
	var req edgeGroupRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	f := s.fleetIndex()
	f.changeMu.Lock()
	defer f.changeMu.Unlock()
	f.mu.RLock()
	g, problems := f.validateEdgeGroup(req, id)
	f.mu.RUnlock()
	if len(problems) > 0 {
		writeErr(w, http.StatusBadRequest, "%s", strings.Join(problems, "; "))
		return
	}
	stored, err := s.store.UpdateEdgeGroup(id, func(old *store.EdgeGroup) error { *old = g; return nil })
	if errors.Is(err, store.ErrNotFound) {
		writeErr(w, http.StatusNotFound, "edge group %d not found", id)
		return
	} else if err != nil {
		s.log.Error("update edge group", "err", err)
		writeErr(w, http.StatusInternalServerError, "could not store the edge group")
		return
	}
	f.putEdgeGroup(*stored)
	s.audit(r, ss.user, auditEdgeGroupUpdate, edgeGroupTarget(id), describeEdgeGroup(stored))
	writeJSON(w, http.StatusOK, edgeGroupView{EdgeGroup: *stored, Members: nonNil(s.edgeGroupMembers(id))})
}

func (s *Server) handleDeleteEdgeGroup(w http.ResponseWriter, r *http.Request, ss session) {
	id, ok := idFromPath(w, r, "edge group")
	if !ok {
		return
	}
	f := s.fleetIndex()
	f.changeMu.Lock()
	defer f.changeMu.Unlock()
	if err := s.store.DeleteEdgeGroup(id); errors.Is(err, store.ErrNotFound) {
		writeErr(w, http.StatusNotFound, "edge group %d not found", id)
		return
	} else if err != nil {
		s.log.Error("delete edge group", "err", err)
		writeErr(w, http.StatusInternalServerError, "could not delete the edge group")
		return
	}
	f.removeEdgeGroup(id)
	s.audit(r, ss.user, auditEdgeGroupDelete, edgeGroupTarget(id), "")
	w.WriteHeader(http.StatusNoContent)
}

func describeEdgeGroup(g *store.EdgeGroup) string {
	if g.Dynamic {
		return fmt.Sprintf("name %q, dynamic, tags %v, match %s", g.Name, g.TagIDs, g.Match)
	}
	return fmt.Sprintf("name %q, static, environments %v", g.Name, g.EnvironmentIDs)
}

func nonNil(ids []uint64) []uint64 {
	if ids == nil {
		return []uint64{}
	}
	return ids
}
