package server

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"outpost/server/store"
)

// Password and username bounds. bcrypt reads at most 72 bytes, so a longer
// password is refused rather than silently cut.
const (
	passwordMin = 8
	passwordMax = 72
)

var usernameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// errLastAdmin refuses a change that would leave no administrator.
var errLastAdmin = errors.New("this is the last administrator: make another user an administrator first")

// keepAnAdmin is the store guard that refuses any user change leaving no
// administrator.
func keepAnAdmin(after []store.User) error {
	for _, u := range after {
		if u.Role == RoleAdmin {
			return nil
		}
	}
	return errLastAdmin
}

// userView is a user as the API shows it: never the password hash.
type userView struct {
	ID       uint64   `json:"id"`
	Username string   `json:"username"`
	Role     string   `json:"role"`
	Teams    []uint64 `json:"teams"`
}

func viewUser(u *store.User, teams []store.Team) userView {
	v := userView{ID: u.ID, Username: u.Username, Role: u.Role, Teams: []uint64{}}
	for _, t := range teams {
		if slices.Contains(t.Members, u.ID) {
			v.Teams = append(v.Teams, t.ID)
		}
	}
	return v
}

// checkPassword appends what is wrong with password p, named field, to
// problems.
func checkPassword(problems []string, field, p string) []string {
	if len(strings.TrimSpace(p)) < passwordMin || len(p) > passwordMax {
		problems = append(problems, fmt.Sprintf("%s: %d to %d characters (bytes), not only spaces", field, passwordMin, passwordMax))
	}
	return problems
}

func checkRole(problems []string, role string) []string {
	if !validRole(role) {
		problems = append(problems, fmt.Sprintf("role %q: want one of %s", role, strings.Join(Roles, ", ")))
	}
	return problems
}

// hashPassword is bcrypt at the default cost. It takes about 50 ms: call it
// before any store transaction, never inside one.
func hashPassword(p string) ([]byte, error) {
	return bcrypt.GenerateFromPassword([]byte(p), bcrypt.DefaultCost)
}

func (s *Server) handleListUsers(w http.ResponseWriter, _ *http.Request, _ session) {
	users, err := s.store.Users()
	if err != nil {
		s.apiInternal(w, "list users", err)
		return
	}
	teams, err := s.store.Teams()
	if err != nil {
		s.apiInternal(w, "list users: teams", err)
		return
	}
	out := make([]userView, 0, len(users))
	for i := range users {
		out = append(out, viewUser(&users[i], teams))
	}
	slices.SortFunc(out, func(a, b userView) int { return cmp.Compare(a.ID, b.ID) })
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleCreateUser(w http.ResponseWriter, r *http.Request, ss session) {
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
		Role     string `json:"role"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	var problems []string
	if !usernameRE.MatchString(req.Username) {
		problems = append(problems, fmt.Sprintf("username %q: 1 to 64 characters, letters, digits and . _ @ -, starting with a letter or digit", req.Username))
	}
	problems = checkPassword(problems, "password", req.Password)
	problems = checkRole(problems, req.Role)
	if len(problems) > 0 {
		writeErr(w, http.StatusBadRequest, "%s", strings.Join(problems, "; "))
		return
	}
	hash, err := hashPassword(req.Password)
	if err != nil {
		s.apiInternal(w, "create user: hash", err)
		return
	}
	u := &store.User{Username: req.Username, PasswordHash: hash, Role: req.Role}
	if err := s.store.CreateUser(u); errors.Is(err, store.ErrExists) {
		writeErr(w, http.StatusConflict, "username %q is taken", req.Username)
		return
	} else if err != nil {
		s.apiInternal(w, "create user", err)
		return
	}
	s.audit(r, ss.user, auditUserCreate, userTarget(u.Username), "role "+u.Role)
	writeJSON(w, http.StatusCreated, viewUser(u, nil))
}

// userFromPath loads the user named by the {id} path value.
func (s *Server) userFromPath(w http.ResponseWriter, r *http.Request) (*store.User, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "user id %q: want a positive integer", r.PathValue("id"))
		return nil, false
	}
	u, err := s.store.UserByID(id)
	if errors.Is(err, store.ErrNotFound) {
		writeErr(w, http.StatusNotFound, "user %d not found", id)
		return nil, false
	} else if err != nil {
		s.apiInternal(w, "read user", err)
		return nil, false
	}
	return u, true
}

// handleGetUser serves GET /api/users/{id}: administrators read anyone,
// others only themselves.
func (s *Server) handleGetUser(w http.ResponseWriter, r *http.Request, ss session) {
	u, ok := s.userFromPath(w, r)
	if !ok {
		return
	}
	if u.Username != ss.user && !can(ss.role, permUsersManage) {
		writeErr(w, http.StatusForbidden, "you may only read your own account")
		return
	}
	teams, err := s.store.Teams()
	if err != nil {
		s.apiInternal(w, "read user: teams", err)
		return
	}
	writeJSON(w, http.StatusOK, viewUser(u, teams))
}

// handleUpdateUser serves PATCH /api/users/{id}: {password, currentPassword,
// role}. Anyone may change their own password, giving the current one;
// administrators change anyone's password and role. No change may leave the
// server without an administrator. The user's other sessions end.
func (s *Server) handleUpdateUser(w http.ResponseWriter, r *http.Request, ss session) {
	var req struct {
		Password        *string `json:"password"`
		CurrentPassword string  `json:"currentPassword"`
		Role            *string `json:"role"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	u, ok := s.userFromPath(w, r)
	if !ok {
		return
	}
	self, admin := u.Username == ss.user, can(ss.role, permUsersManage)
	switch {
	case !self && !admin:
		writeErr(w, http.StatusForbidden, "you may only change your own password; ask an administrator")
		return
	case req.Role != nil && !admin:
		writeErr(w, http.StatusForbidden, "only administrators change roles")
		return
	}
	var problems []string
	if req.Password == nil && req.Role == nil {
		problems = append(problems, "nothing to change: give password, role, or both")
	}
	if req.Password != nil {
		problems = checkPassword(problems, "password", *req.Password)
		if self && req.CurrentPassword == "" {
			problems = append(problems, "currentPassword: required to change your own password")
		}
	}
	if req.Role != nil {
		problems = checkRole(problems, *req.Role)
	}
	if len(problems) > 0 {
		writeErr(w, http.StatusBadRequest, "%s", strings.Join(problems, "; "))
		return
	}
	if req.Password != nil && self && bcrypt.CompareHashAndPassword(u.PasswordHash, []byte(req.CurrentPassword)) != nil {
		s.audit(r, ss.user, auditUserUpdate, userTarget(u.Username), "refused: wrong current password")
		writeErr(w, http.StatusBadRequest, "currentPassword: does not match; nothing was changed")
		return
	}
	var hash []byte
	if req.Password != nil {
		var err error
		if hash, err = hashPassword(*req.Password); err != nil {
			s.apiInternal(w, "update user: hash", err)
			return
		}
	}
	var changed []string
	u, err := s.store.UpdateUser(u.ID, func(u *store.User) error {
		changed = changed[:0]
		if hash != nil {
			u.PasswordHash = hash
			changed = append(changed, "password")
		}
		if req.Role != nil && *req.Role != u.Role {
			changed = append(changed, fmt.Sprintf("role %s -> %s", u.Role, *req.Role))
			u.Role = *req.Role
		}
		return nil
	}, keepAnAdmin)
	switch {
	case errors.Is(err, errLastAdmin):
		writeErr(w, http.StatusConflict, "%v", err)
		return
	case errors.Is(err, store.ErrNotFound):
		writeErr(w, http.StatusNotFound, "user %s was deleted meanwhile", r.PathValue("id"))
		return
	case err != nil:
		s.apiInternal(w, "update user", err)
		return
	}
	// A new password or role ends the user's sessions, except the one making
	// the change when it is their own.
	keep := ""
	if self {
		keep = bearer(r)
	}
	s.sessions.revokeUser(u.Username, keep)
	if self && req.Role != nil {
		s.sessions.setRole(keep, u.Role)
	}
	s.audit(r, ss.user, auditUserUpdate, userTarget(u.Username), strings.Join(changed, ", "))
	teams, _ := s.store.Teams()
	writeJSON(w, http.StatusOK, viewUser(u, teams))
}

// handleDeleteUser serves DELETE /api/users/{id}, refusing to delete the last
// administrator. The user's sessions end and it leaves its teams.
func (s *Server) handleDeleteUser(w http.ResponseWriter, r *http.Request, ss session) {
	u, ok := s.userFromPath(w, r)
	if !ok {
		return
	}
	u, err := s.store.DeleteUser(u.ID, keepAnAdmin)
	switch {
	case errors.Is(err, errLastAdmin):
		writeErr(w, http.StatusConflict, "%v", err)
		return
	case errors.Is(err, store.ErrNotFound):
		writeErr(w, http.StatusNotFound, "user %s not found", r.PathValue("id"))
		return
	case err != nil:
		s.apiInternal(w, "delete user", err)
		return
	}
	s.sessions.revokeUser(u.Username, "")
	s.audit(r, ss.user, auditUserDelete, userTarget(u.Username), "role "+u.Role)
	w.WriteHeader(http.StatusNoContent)
}

// apiInternal logs err and answers 500 without its detail.
func (s *Server) apiInternal(w http.ResponseWriter, op string, err error) {
	s.log.Error(op, "err", err)
	writeErr(w, http.StatusInternalServerError, "internal error (%s); see the server log", op)
}

// revokeUser ends every session of user except the one of token keep.
func (ss *sessions) revokeUser(user, keep string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for tok, s := range ss.byTok {
		if s.user == user && tok != keep {
			delete(ss.byTok, tok)
		}
	}
}

// setRole changes the role of the session of token tok.
func (ss *sessions) setRole(tok, role string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s, ok := ss.byTok[tok]; ok {
		s.role = role
		ss.byTok[tok] = s
	}
}

// handleLogout serves DELETE /api/auth: the caller's token ends now.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request, ss session) {
	s.sessions.revoke(bearer(r))
	s.audit(r, ss.user, auditLogout, userTarget(ss.user), "api")
	w.WriteHeader(http.StatusNoContent)
}

// sessionsOwner loads the user of the {id} path value, whose sessions the
// caller may see and end: their own, or anyone's for an administrator.
func (s *Server) sessionsOwner(w http.ResponseWriter, r *http.Request, ss session) (*store.User, bool) {
	u, ok := s.userFromPath(w, r)
	if !ok {
		return nil, false
	}
	if u.Username != ss.user && !can(ss.role, permUsersManage) {
		writeErr(w, http.StatusForbidden, "you may only see and end your own sessions")
		return nil, false
	}
	return u, true
}

// handleListSessions serves GET /api/users/{id}/sessions: the user's live
// sessions (IDs, never tokens).
func (s *Server) handleListSessions(w http.ResponseWriter, r *http.Request, ss session) {
	if u, ok := s.sessionsOwner(w, r, ss); ok {
		writeJSON(w, http.StatusOK, s.sessions.of(u.Username, bearer(r)))
	}
}

// handleRevokeSessions serves DELETE /api/users/{id}/sessions (all of them,
// the caller's own excepted) and DELETE /api/users/{id}/sessions/{sid} (one).
func (s *Server) handleRevokeSessions(w http.ResponseWriter, r *http.Request, ss session) {
	u, ok := s.sessionsOwner(w, r, ss)
	if !ok {
		return
	}
	if sid := r.PathValue("sid"); sid != "" {
		if !s.sessions.revokeID(u.Username, sid) {
			writeErr(w, http.StatusNotFound, "user %s has no session %q", u.Username, sid)
			return
		}
		s.audit(r, ss.user, auditSessionRevoke, userTarget(u.Username), "session "+sid)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.sessions.revokeUser(u.Username, bearer(r))
	s.audit(r, ss.user, auditSessionRevoke, userTarget(u.Username), "every session but the caller's")
	w.WriteHeader(http.StatusNoContent)
}
