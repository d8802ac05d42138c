package server

import (
	"net/http"
	"strconv"
	"strings"

	"outpost/server/store"
)

// Audit actions. Every change made through the API and every security event
// is recorded under one of these.
const (
	auditLogin           = "login"
	auditLoginFailed     = "login.failed"
	auditAccessDenied    = "access.denied"
	auditSetup           = "setup"
	auditUserCreate      = "user.create"
	auditUserUpdate      = "user.update"
	auditUserDelete      = "user.delete"
	auditTeamCreate      = "team.create"
	auditTeamDelete      = "team.delete"
	auditTeamMembers     = "team.members"
	auditEnvCreate       = "environment.create"
	auditEnvUpdate       = "environment.update"
	auditEnvDelete       = "environment.delete"
	auditIdentityRefused = "edge.identity_refused"
	auditDeviceRejected  = "device.rejected"
	auditBackup          = "store.backup"
)

// auditFieldMax bounds each text field of an entry: a failed login's
// username is whatever the caller sent.
const auditFieldMax = 256

// audit appends an entry to the audit log, in its own short write
// transaction. actor is a username, deviceActor(env), or "anonymous"; r
// gives the remote address and may be nil. A failure to write is logged,
// not returned: the change it records has already happened.
func (s *Server) audit(r *http.Request, actor, action, target, detail string) {
	e := &store.AuditEntry{
		Time: s.now().Unix(), Actor: clip(actor), Action: clip(action),
		Target: clip(target), Detail: clip(detail),
	}
	if r != nil {
		e.Remote = clip(r.RemoteAddr)
	}
	if err := s.store.AppendAudit(e); err != nil {
		s.log.Error("audit", "err", err, "actor", e.Actor, "action", e.Action, "target", e.Target)
	}
}

// deviceActor is the audit actor of an edge request for environment env.
func deviceActor(env uint64) string { return "device " + strconv.FormatUint(env, 10) }

// envTarget, userTarget and teamTarget name audit targets.
func envTarget(id uint64) string    { return "environment " + strconv.FormatUint(id, 10) }
func userTarget(name string) string { return "user " + name }
func teamTarget(name string) string { return "team " + name }

func clip(s string) string {
	if len(s) <= auditFieldMax {
		return s
	}
	return strings.ToValidUTF8(s[:auditFieldMax], "") + "…"
}

// auditPageMax is the largest page GET /api/audit answers.
const auditPageMax = 1000

// auditPage is the answer of GET /api/audit. Next, when set, is the value of
// ?before= that fetches the following (older) page.
type auditPage struct {
	Entries []store.AuditEntry `json:"entries"`
	Next    uint64             `json:"next,omitempty"`
}

// handleAudit serves GET /api/audit?limit=&before=: entries newest first.
func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request, _ session) {
	q := r.URL.Query()
	limit, before := 100, uint64(0)
	var problems []string
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > auditPageMax {
			problems = append(problems, "limit "+strconv.Quote(v)+": want an integer from 1 to "+strconv.Itoa(auditPageMax))
		}
		limit = n
	}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			problems = append(problems, "before "+strconv.Quote(v)+": want a positive entry id (the next field of the previous page)")
		}
		before = n
	}
	if len(problems) > 0 {
		writeErr(w, http.StatusBadRequest, "%s", strings.Join(problems, "; "))
		return
	}
	entries, err := s.store.Audit(before, limit)
	if err != nil {
		s.log.Error("read audit log", "err", err)
		writeErr(w, http.StatusInternalServerError, "could not read the audit log")
		return
	}
	page := auditPage{Entries: entries}
	if len(entries) == limit && entries[len(entries)-1].ID > 1 {
		page.Next = entries[len(entries)-1].ID
	}
	writeJSON(w, http.StatusOK, page)
}
