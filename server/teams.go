package server

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"outpost/server/store"
)

func (s *Server) handleListTeams(w http.ResponseWriter, _ *http.Request, _ session) {
	teams, err := s.store.Teams()
	if err != nil {
		s.apiInternal(w, "list teams", err)
		return
	}
	writeJSON(w, http.StatusOK, teams)
}

// handleCreateTeam serves POST /api/teams: {name, members}.
func (s *Server) handleCreateTeam(w http.ResponseWriter, r *http.Request, ss session) {
	var req struct {
		Name    string   `json:"name"`
		Members []uint64 `json:"members"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	req.Name = strings.TrimSpace(req.Name)
	var problems []string
	if req.Name == "" || len(req.Name) > 64 {
		problems = append(problems, "name: required, at most 64 characters")
	} else if p := plainText("name", req.Name); p != "" {
		problems = append(problems, p)
	}
	problems = s.checkMembers(problems, req.Members)
	if len(problems) > 0 {
		writeErr(w, http.StatusBadRequest, "%s", strings.Join(problems, "; "))
		return
	}
	t := &store.Team{Name: req.Name, Members: req.Members}
	err := s.store.CreateTeam(t)
	var missing *store.MissingUsersError
	switch {
	case errors.Is(err, store.ErrExists):
		writeErr(w, http.StatusConflict, "team name %q is taken", req.Name)
		return
	case errors.As(err, &missing):
		writeErr(w, http.StatusBadRequest, "members: %v (deleted meanwhile)", missing)
		return
	case err != nil:
		s.apiInternal(w, "create team", err)
		return
	}
	s.audit(r, ss.user, auditTeamCreate, teamTarget(t.Name), fmt.Sprintf("members %v", t.Members))
	writeJSON(w, http.StatusCreated, t)
}

// checkMembers appends a problem naming every member that is not a user.
func (s *Server) checkMembers(problems []string, members []uint64) []string {
	if len(members) == 0 {
		return problems
	}
	users, err := s.store.Users()
	if err != nil {
		return append(problems, "members: could not read the users; try again")
	}
	ids := map[uint64]bool{}
	for _, u := range users {
		ids[u.ID] = true
	}
	var missing []string
	for _, m := range members {
		if !ids[m] {
			missing = append(missing, strconv.FormatUint(m, 10))
		}
	}
	if len(missing) > 0 {
		problems = append(problems, "members: no user with id "+strings.Join(missing, ", "))
	}
	return problems
}

// teamID parses the {id} path value.
func teamID(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "team id %q: want a positive integer", r.PathValue("id"))
		return 0, false
	}
	return id, true
}

func (s *Server) handleDeleteTeam(w http.ResponseWriter, r *http.Request, ss session) {
	id, ok := teamID(w, r)
	if !ok {
		return
	}
	t, err := s.store.Team(id)
	if err == nil {
		err = s.store.DeleteTeam(id)
	}
	if errors.Is(err, store.ErrNotFound) {
		writeErr(w, http.StatusNotFound, "team %d not found", id)
		return
	} else if err != nil {
		s.apiInternal(w, "delete team", err)
		return
	}
	s.audit(r, ss.user, auditTeamDelete, teamTarget(t.Name), "")
	w.WriteHeader(http.StatusNoContent)
}

// handleSetTeamMembers serves PUT /api/teams/{id}/members: {members}, the
// complete new list of user IDs.
func (s *Server) handleSetTeamMembers(w http.ResponseWriter, r *http.Request, ss session) {
	var req struct {
		Members *[]uint64 `json:"members"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	id, ok := teamID(w, r)
	if !ok {
		return
	}
	if req.Members == nil {
		writeErr(w, http.StatusBadRequest, "members: required, the complete list of user IDs ([] empties the team)")
		return
	}
	if problems := s.checkMembers(nil, *req.Members); len(problems) > 0 {
		writeErr(w, http.StatusBadRequest, "%s", strings.Join(problems, "; "))
		return
	}
	t, err := s.store.SetTeamMembers(id, *req.Members)
	var missing *store.MissingUsersError
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeErr(w, http.StatusNotFound, "team %d not found", id)
		return
	case errors.As(err, &missing):
		writeErr(w, http.StatusBadRequest, "members: %v (deleted meanwhile)", missing)
		return
	case err != nil:
		s.apiInternal(w, "set team members", err)
		return
	}
	s.audit(r, ss.user, auditTeamMembers, teamTarget(t.Name), fmt.Sprintf("members %v", t.Members))
	writeJSON(w, http.StatusOK, t)
}
