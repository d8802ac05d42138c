package server

import (
	"fmt"
	"net/http"
	"strings"
)

// apiHandler is an API handler behind the role check; it gets the caller's
// session.
type apiHandler func(http.ResponseWriter, *http.Request, session)

// route is one entry of the route table (Server.routeTable). routes()
// registers exactly the table, and TestEveryRouteChecksRoles walks it
// against every role, so a route cannot be added without being checked.
type route struct {
	pattern string     // http.ServeMux pattern, "METHOD /path/{wildcard}"
	perm    permission // what the caller's role must hold; permPublic: no check
	api     apiHandler // set unless perm is permPublic
	public  http.Handler
}

// apiRoute is a route that requires a token whose role holds perm.
func apiRoute(pattern string, perm permission, h apiHandler) route {
	return route{pattern: pattern, perm: perm, api: h}
}

// publicRoute is a route outside the role check. Keep these to the edge
// endpoints, /healthz, the UI, login and setup: the route test
// refuses any other.
func publicRoute(pattern string, h http.Handler) route {
	return route{pattern: pattern, perm: permPublic, public: h}
}

// handler is the route's handler with its role check. Every route but the
// edge endpoints answers with HSTS: browsers reach the UI and API over HTTPS
// only, while a device never reads the header and would pay its bytes on
// every exchange.
func (s *Server) handler(rt route) http.Handler {
	h := rt.public
	if rt.perm != permPublic {
		h = s.allow(rt.perm, rt.api)
	}
	if strings.Contains(rt.pattern, " /edge/") {
		return h
	}
	return hsts(h)
}

// hstsValue asks browsers for HTTPS only, for a year.
const hstsValue = "max-age=31536000"

func hsts(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", hstsValue)
		h.ServeHTTP(w, r)
	})
}

// allow wraps an API handler with the token and role check: 401 without a
// valid token, 403 when the token's role does not hold p (see grants).
func (s *Server) allow(p permission, h apiHandler) http.HandlerFunc {
	if h == nil {
		panic(fmt.Sprintf("allow(%s): nil handler", p))
	}
	return func(w http.ResponseWriter, r *http.Request) {
		ss, ok := s.sessions.lookup(bearer(r))
		if !ok {
			writeErr(w, http.StatusUnauthorized, "missing or expired token: POST /api/auth with your username and password")
			return
		}
		if !can(ss.role, p) {
			s.audit(r, ss.user, auditAccessDenied, r.Method+" "+r.URL.Path, fmt.Sprintf("role %s lacks %s", ss.role, p))
			writeErr(w, http.StatusForbidden, "your role (%s) may not do this (needs %s); ask an administrator", ss.role, p)
			return
		}
		h(w, r, ss)
		if r.Method != http.MethodGet {
			// Any change may move what environments should run (groups,
			// tags, trust, stacks, jobs): the reconciler looks again.
			s.kickReconcile()
		}
	}
}
