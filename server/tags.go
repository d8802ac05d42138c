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

// nameMax bounds tag and group names.
const nameMax = 128

// checkName trims name and reports a problem when it is empty, too long, or
// taken by another record (taken reports that).
func checkName(what, name string, taken bool) (string, string) {
	name = strings.TrimSpace(name)
	switch {
	case name == "" || len(name) > nameMax:
		return name, fmt.Sprintf("name %q: required, at most %d characters", name, nameMax)
	case taken:
		return name, fmt.Sprintf("name %q: another %s has it", name, what)
	}
	return name, ""
}

// idFromPath parses the {id} path value, answering 400 when it is not one.
func idFromPath(w http.ResponseWriter, r *http.Request, what string) (uint64, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		writeErr(w, http.StatusBadRequest, "%s id %q: want a positive integer", what, r.PathValue("id"))
		return 0, false
	}
	return id, true
}

func tagTarget(id uint64) string { return "tag " + strconv.FormatUint(id, 10) }

// tagNameTaken reports whether another tag than id is called name
// (case-insensitive).
func (f *fleet) tagNameTaken(name string, id uint64) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, t := range f.tags {
		if t.ID != id && strings.EqualFold(t.Name, strings.TrimSpace(name)) {
			return true
		}
	}
	return false
}

func (s *Server) handleListTags(w http.ResponseWriter, _ *http.Request, _ session) {
	f := s.fleetIndex()
	f.mu.RLock()
	out := make([]store.Tag, 0, len(f.tags))
	for _, t := range f.tags {
		out = append(out, t)
	}
	f.mu.RUnlock()
	slices.SortFunc(out, func(a, b store.Tag) int { return cmp.Compare(a.ID, b.ID) })
	writeJSON(w, http.StatusOK, out)
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
	name, problem := checkName("tag", req.Name, f.tagNameTaken(req.Name, 0))
	if problem != "" {
		writeErr(w, http.StatusBadRequest, "%s", problem)
		return
	}
	t := &store.Tag{Name: name}
	if err := s.store.CreateTag(t); err != nil {
		s.log.Error("create tag", "err", err)
		writeErr(w, http.StatusInternalServerError, "could not store the tag")
		return
	}
	f.putTag(*t)
	s.audit(r, ss.user, auditTagCreate, tagTarget(t.ID), fmt.Sprintf("name %q", t.Name))
	writeJSON(w, http.StatusCreated, t)
}

func (s *Server) handleUpdateTag(w http.ResponseWriter, r *http.Request, ss session) {
	id, ok := idFromPath(w, r, "tag")
	if !ok {
		return
	}
	var req struct {
		Name string `json:"name"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	f := s.fleetIndex()
	f.changeMu.Lock()
	defer f.changeMu.Unlock()
	name, problem := checkName("tag", req.Name, f.tagNameTaken(req.Name, id))
	if problem != "" {
		writeErr(w, http.StatusBadRequest, "%s", problem)
		return
	}
	t, err := s.store.UpdateTag(id, func(t *store.Tag) error { t.Name = name; return nil })
	if errors.Is(err, store.ErrNotFound) {
		writeErr(w, http.StatusNotFound, "tag %d not found", id)
		return
	} else if err != nil {
		s.log.Error("update tag", "err", err)
		writeErr(w, http.StatusInternalServerError, "could not store the tag")
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
	if err := s.store.DeleteTag(id, envs); errors.Is(err, store.ErrNotFound) {
		writeErr(w, http.StatusNotFound, "tag %d not found", id)
		return
	} else if err != nil {
		s.log.Error("delete tag", "err", err)
		writeErr(w, http.StatusInternalServerError, "could not delete the tag")
		return
	}
	f.removeTag(id)
	s.audit(r, ss.user, auditTagDelete, tagTarget(id), fmt.Sprintf("taken off %d environments", len(envs)))
	w.WriteHeader(http.StatusNoContent)
}
