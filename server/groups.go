package server

import (
	"fmt"
	"net/http"
	"strconv"

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

// envGroupView is an environment group with its members.
type envGroupView struct {
	store.EnvironmentGroup
	EnvironmentIDs []uint64 `json:"environmentIds"`
}

func (s *Server) handleListEnvGroups(w http.ResponseWriter, _ *http.Request, _ session) {
	f := s.fleetIndex()
	writeJSON(w, http.StatusOK, sortedByID(f, f.envGroups, envGroupKey))
}

func (s *Server) handleGetEnvGroup(w http.ResponseWriter, r *http.Request, _ session) {
	f := s.fleetIndex()
	id, g, ok := fromPath(w, r, f, f.envGroups, "environment group")
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, envGroupView{EnvironmentGroup: g, EnvironmentIDs: nonNil(f.inEnvGroup(id))})
}

func (s *Server) handleCreateEnvGroup(w http.ResponseWriter, r *http.Request, ss session) {
	var req envGroupRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	f := s.fleetIndex()
	f.changeMu.Lock()
	defer f.changeMu.Unlock()
	name, ok := uniqueName(w, f, f.envGroups, envGroupKey, "environment group", req.Name, 0)
	if !ok {
		return
	}
	g := &store.EnvironmentGroup{Name: name, Description: clip(req.Description)}
	if s.writeFailed(w, s.store.CreateEnvironmentGroup(g), "create", "environment group", 0) {
		return
	}
	f.putEnvGroup(*g)
	s.audit(r, ss.user, auditEnvGroupCreate, envGroupTarget(g.ID), fmt.Sprintf("name %q", g.Name))
	writeJSON(w, http.StatusCreated, g)
}

func (s *Server) handleUpdateEnvGroup(w http.ResponseWriter, r *http.Request, ss session) {
	var req envGroupRequest
	id, ok := idAndBody(w, r, "environment group", &req)
	if !ok {
		return
	}
	f := s.fleetIndex()
	f.changeMu.Lock()
	defer f.changeMu.Unlock()
	name, ok := uniqueName(w, f, f.envGroups, envGroupKey, "environment group", req.Name, id)
	if !ok {
		return
	}
	g, err := s.store.UpdateEnvironmentGroup(id, func(g *store.EnvironmentGroup) error {
		g.Name, g.Description = name, clip(req.Description)
		return nil
	})
	if s.writeFailed(w, err, "update", "environment group", id) {
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
	if s.writeFailed(w, s.store.DeleteEnvironmentGroup(id, members), "delete", "environment group", id) {
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
	name, p := checkName("edge group", req.Name, nameTaken(f.edgeGroups, edgeGroupKey, req.Name, id))
	if p != "" {
		problems = append(problems, p)
	}
	g := store.EdgeGroup{ID: id, Name: name, Dynamic: req.Dynamic}
	if req.Dynamic {
		if len(req.EnvironmentIDs) > 0 {
			problems = append(problems, "environmentIds: a dynamic group takes its members by tags; leave it out")
		}
		if len(req.TagIDs) == 0 {
			problems = append(problems, "tagIds: a dynamic group needs at least one tag")
		}
		problems = append(problems, unknownIDs("tagIds", "tags", req.TagIDs, f.tags)...)
		switch req.Match {
		case "":
			req.Match = store.MatchAll
		case store.MatchAll, store.MatchAny:
		default:
			problems = append(problems, fmt.Sprintf("match %q: want all or any", req.Match))
		}
		g.TagIDs, g.Match = sortedIDs(req.TagIDs), req.Match
	} else {
		if len(req.TagIDs) > 0 || req.Match != "" {
			problems = append(problems, "tagIds, match: only for a dynamic group (set dynamic: true)")
		}
		problems = append(problems, unknownIDs("environmentIds", "environments", req.EnvironmentIDs, f.envs)...)
		g.EnvironmentIDs = sortedIDs(req.EnvironmentIDs)
	}
	return g, problems
}

func (s *Server) handleListEdgeGroups(w http.ResponseWriter, _ *http.Request, _ session) {
	f := s.fleetIndex()
	writeJSON(w, http.StatusOK, sortedByID(f, f.edgeGroups, edgeGroupKey))
}

func (s *Server) handleGetEdgeGroup(w http.ResponseWriter, r *http.Request, _ session) {
	f := s.fleetIndex()
	id, g, ok := fromPath(w, r, f, f.edgeGroups, "edge group")
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, edgeGroupView{EdgeGroup: g, Members: nonNil(s.edgeGroupMembers(id))})
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
	if refuse(w, problems) || s.writeFailed(w, s.store.CreateEdgeGroup(&g), "create", "edge group", 0) {
		return
	}
	f.putEdgeGroup(g)
	s.audit(r, ss.user, auditEdgeGroupCreate, edgeGroupTarget(g.ID), describeEdgeGroup(&g))
	writeJSON(w, http.StatusCreated, edgeGroupView{EdgeGroup: g, Members: nonNil(s.edgeGroupMembers(g.ID))})
}

// handleUpdateEdgeGroup replaces an edge group's name and rule (or list);
// its members are recomputed at once.
func (s *Server) handleUpdateEdgeGroup(w http.ResponseWriter, r *http.Request, ss session) {
	var req edgeGroupRequest
	id, ok := idAndBody(w, r, "edge group", &req)
	if !ok {
		return
	}
	f := s.fleetIndex()
	f.changeMu.Lock()
	defer f.changeMu.Unlock()
	f.mu.RLock()
	g, problems := f.validateEdgeGroup(req, id)
	f.mu.RUnlock()
	if refuse(w, problems) {
		return
	}
	stored, err := s.store.UpdateEdgeGroup(id, func(old *store.EdgeGroup) error { *old = g; return nil })
	if s.writeFailed(w, err, "update", "edge group", id) {
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
	if s.writeFailed(w, s.store.DeleteEdgeGroup(id), "delete", "edge group", id) {
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
