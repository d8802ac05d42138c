package server

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"outpost/server/store"
)

// Audit actions of tags and groups.
const (
	auditTagCreate       = "tag.create"
	auditTagUpdate       = "tag.update"
	auditTagDelete       = "tag.delete"
	auditEnvGroupCreate  = "environment_group.create"
	auditEnvGroupUpdate  = "environment_group.update"
	auditEnvGroupDelete  = "environment_group.delete"
	auditEdgeGroupCreate = "edge_group.create"
	auditEdgeGroupUpdate = "edge_group.update"
	auditEdgeGroupDelete = "edge_group.delete"
)

// Errors of tag and group changes.
var (
	errUnknownTag   = errors.New("no such tag; list them with GET /api/tags")
	errUnknownGroup = errors.New("no such edge group; list them with GET /api/edge-groups")
	errDynamicGroup = errors.New("dynamic edge groups take their members by tags; tag the environment instead")
)

func tagTarget(id uint64) string { return "tag " + strconv.FormatUint(id, 10) }

func (s *Server) handleListTags(w http.ResponseWriter, _ *http.Request, _ session) {
	f := s.fleetIndex()
	writeJSON(w, http.StatusOK, sortedByID(f, f.tags, tagKey))
}

func (s *Server) handleCreateTag(w http.ResponseWriter, r *http.Request, ss session) {
	var req struct {
		Name string `json:"name"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	f := s.fleetIndex()
	f.changeMu.Lock()
	defer f.changeMu.Unlock()
	name, ok := uniqueName(w, f, f.tags, tagKey, "tag", req.Name, 0)
	if !ok {
		return
	}
	t := &store.Tag{Name: name}
	if s.writeFailed(w, s.store.CreateTag(t), "create", "tag", 0) {
		return
	}
	f.putTag(*t)
	s.audit(r, ss.user, auditTagCreate, tagTarget(t.ID), fmt.Sprintf("name %q", t.Name))
	writeJSON(w, http.StatusCreated, t)
}

func (s *Server) handleUpdateTag(w http.ResponseWriter, r *http.Request, ss session) {
	var req struct {
		Name string `json:"name"`
	}
	id, ok := idAndBody(w, r, "tag", &req)
	if !ok {
		return
	}
	f := s.fleetIndex()
	f.changeMu.Lock()
	defer f.changeMu.Unlock()
	name, ok := uniqueName(w, f, f.tags, tagKey, "tag", req.Name, id)
	if !ok {
		return
	}
	t, err := s.store.UpdateTag(id, func(t *store.Tag) error { t.Name = name; return nil })
	if s.writeFailed(w, err, "update", "tag", id) {
		return
	}
	f.putTag(*t)
	s.audit(r, ss.user, auditTagUpdate, tagTarget(id), fmt.Sprintf("name %q", t.Name))
	writeJSON(w, http.StatusOK, t)
}

// handleDeleteTag deletes a tag, takes it off its environments and the
// edge groups' rules, and recomputes those groups.
func (s *Server) handleDeleteTag(w http.ResponseWriter, r *http.Request, ss session) {
	id, ok := idFromPath(w, r, "tag")
	if !ok {
		return
	}
	f := s.fleetIndex()
	f.changeMu.Lock()
	defer f.changeMu.Unlock()
	envs := f.taggedWith(id)
	if s.writeFailed(w, s.store.DeleteTag(id, envs), "delete", "tag", id) {
		return
	}
	f.removeTag(id)
	s.audit(r, ss.user, auditTagDelete, tagTarget(id), fmt.Sprintf("taken off %d environments", len(envs)))
	w.WriteHeader(http.StatusNoContent)
}
