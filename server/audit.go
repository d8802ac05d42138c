package server

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"outpost/server/store"
	"outpost/throttle"
)

// Audit actions. Every change made through the API and every security event
// is recorded under one of these.
const (
	auditLogin            = "login"
	auditLoginFailed      = "login.failed"
	auditAccessDenied     = "access.denied"
	auditSetup            = "setup"
	auditUserCreate       = "user.create"
	auditUserUpdate       = "user.update"
	auditUserDelete       = "user.delete"
	auditTeamCreate       = "team.create"
	auditTeamDelete       = "team.delete"
	auditTeamMembers      = "team.members"
	auditEnvCreate        = "environment.create"
	auditEnvUpdate        = "environment.update"
	auditEnvDelete        = "environment.delete"
	auditEdgeKeyReissue   = "environment.edge_key"
	auditLogout           = "logout"
	auditOnboardingRotate = "onboarding_key.rotate"
	auditSessionRevoke    = "user.sessions_revoke"
	auditIdentityRefused  = "edge.identity_refused"
	auditDeviceRejected   = "device.rejected"
	auditBackup           = "store.backup"
	auditLoginLocked      = "login.locked"
)

// auditFieldMax bounds each text field of an entry: a failed login's
// username is whatever the caller sent.
const auditFieldMax = 256

// audit appends an entry to the audit log, in its own short write
// transaction. actor is a username, deviceActor(env), or "anonymous"; r
// gives the remote address and may be nil. A failure to write is logged,
// not returned: the change it records has already happened.
func (s *Server) audit(r *http.Request, actor, action, target, detail string) {
	remote := ""
	if r != nil {
		remote = r.RemoteAddr
	}
	s.auditAt(remote, actor, action, target, detail)
}

// auditAt is audit for a request known by its client's address alone (the
// web UI's actions).
func (s *Server) auditAt(remote, actor, action, target, detail string) {
	s.appendAudit(&store.AuditEntry{
		Time: s.now().Unix(), Actor: clip(actor), Action: clip(action),
		Target: clip(target), Detail: clip(detail), Remote: clip(remote),
	})
}

// Refusals (failed logins, refused device identities, refused setup posts)
// come from anyone, so they are aggregated: the first of a kind (action,
// source network, target, reason) in a minute is written at once, and the
// rest of that minute become one entry with their count when it ends. They
// are kept apart from changes and decisions, under store.RefusalLimit.
//
// A kind holds what the sender chose (the edge ID it claims, the
// environment it names), so kinds are capped too: past
// refusalKindsPerNetwork kinds of one action from one source network, the
// rest from that network share one entry; past refusalKindsPerAction kinds
// of one action in all, the rest share one entry. An anonymous flood from
// everywhere writes at most refusalKindsPerAction+1 entries of an action a
// minute, so store.RefusalLimit holds over an hour of it before older
// refusals (failed logins among them) go.
const (
	refusalWindow          = 60  // seconds
	refusalKindsPerNetwork = 10  // kinds of one action from one source network at once
	refusalKindsPerAction  = 300 // kinds of one action at once
)

// refusals is the aggregation of the current minute's refusals.
type refusals struct {
	mu sync.Mutex // guards the maps; never held across a store call
	m  map[string]*refusal
	// live kinds (keys of m that are not a shared "many" key) by action
	// and network, and by action
	perNetwork map[string]int
	perAction  map[string]int
}

type refusal struct {
	first store.AuditEntry // as written
	count int              // this window, the first included
	last  int64
	// the perNetwork and perAction keys it counts under; empty for a
	// shared entry
	netKey, action string
}

// auditRefusal records a refusal from remote (an address, or "" when
// unknown) and reports whether it is the first of its kind this minute: the
// caller logs only those.
func (s *Server) auditRefusal(remote, actor, action, target, detail string) bool {
	now := s.now().Unix()
	network := throttle.Network(remote)
	key := action + "\x00" + network + "\x00" + target + "\x00" + detail
	e := store.AuditEntry{Time: now, Actor: clip(actor), Action: clip(action), Target: clip(target),
		Detail: clip(detail), Remote: clip(remote), Count: 1, Refusal: true}
	rs := &s.refused
	rs.mu.Lock()
	if rs.m == nil {
		rs.m, rs.perNetwork, rs.perAction = map[string]*refusal{}, map[string]int{}, map[string]int{}
	}
	netKey, counted := action+"\x00"+network, false
	if _, ok := rs.m[key]; !ok {
		switch {
		case rs.perNetwork[netKey] >= refusalKindsPerNetwork:
			// Ever-new kinds from one network: one entry stands for them.
			key = netKey + "\x00many"
			e.Target, e.Detail = "many targets", "refusals of many kinds from this network; see the log"
		case rs.perAction[action] >= refusalKindsPerAction:
			// ... from everywhere: one entry per action.
			key = action + "\x00many"
			e.Actor, e.Target, e.Remote, e.Detail = "anonymous", "many targets", "many sources", "refusals of many kinds; see the log"
		default:
			counted = true
		}
	}
	r := rs.m[key]
	if r != nil && now-r.first.Time < refusalWindow {
		r.count++
		r.last = now
		rs.mu.Unlock()
		return false
	}
	var done *store.AuditEntry
	if r != nil {
		done = r.summary()
	}
	nr := &refusal{first: e, count: 1, last: now}
	if r != nil {
		nr.netKey, nr.action = r.netKey, r.action // the same kind, counted once
	} else if counted {
		nr.netKey, nr.action = netKey, action
		rs.perNetwork[netKey]++
		rs.perAction[action]++
	}
	rs.m[key] = nr
	rs.mu.Unlock()
	s.appendAudit(done)
	s.appendAudit(&e)
	return true
}

// flushRefusals writes the count of every minute of refusals that has ended
// by now, and forgets it.
func (s *Server) flushRefusals(now int64) {
	var done []*store.AuditEntry
	rs := &s.refused
	rs.mu.Lock()
	for k, r := range rs.m {
		if now-r.first.Time >= refusalWindow {
			done = append(done, r.summary())
			delete(rs.m, k)
			if r.action != "" {
				rs.perNetwork[r.netKey]--
				rs.perAction[r.action]--
				if rs.perNetwork[r.netKey] <= 0 {
					delete(rs.perNetwork, r.netKey)
				}
			}
		}
	}
	rs.mu.Unlock()
	for _, e := range done {
		s.appendAudit(e)
	}
}

// summary is the entry for the refusals after the first one of r's minute,
// or nil when there were none.
func (r *refusal) summary() *store.AuditEntry {
	if r.count < 2 {
		return nil
	}
	e := r.first
	e.Count, e.Until = r.count-1, r.last
	e.Remote = throttle.Network(r.first.Remote)
	e.Detail = clip(fmt.Sprintf("%d more in the minute: %s", r.count-1, r.first.Detail))
	return &e
}

// appendAudit writes e (nothing when nil), logging a failure.
func (s *Server) appendAudit(e *store.AuditEntry) {
	if e == nil {
		return
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

// handleAudit serves GET /api/audit?limit=&before=&refusals=0: entries newest
// first; refusals=0 leaves out the refusals.
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
	entries, err := s.store.Audit(before, limit, q.Get("refusals") != "0")
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
