package server

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// A token's holder logs out with DELETE /api/auth; a user lists their
// sessions (IDs, never tokens) and ends one or all the others; an
// administrator does the same for anyone, and nobody else may.
func TestSessionsAreListedAndRevoked(t *testing.T) {
	s, hs := testServer(t)
	_, admin := addUser(t, s, "admin", RoleAdmin, "correct horse battery")
	olga, _ := addUser(t, s, "olga", RoleOperator, "olga-password-1")
	login := func(user, pw string) string {
		t.Helper()
		var ans map[string]string
		apiJSON(t, hs, "POST", "/api/auth", "", map[string]string{"username": user, "password": pw}, &ans, http.StatusOK)
		return ans["token"]
	}
	a, b, c := login("olga", "olga-password-1"), login("olga", "olga-password-1"), login("olga", "olga-password-1")
	path := fmt.Sprintf("/api/users/%d/sessions", olga.ID)
	var list []sessionView
	apiJSON(t, hs, "GET", path, a, nil, &list, http.StatusOK)
	status, raw := call(t, hs, "GET", path, a, nil)
	if len(list) != 4 || status != http.StatusOK || strings.Contains(string(raw), a) || strings.Contains(string(raw), b) {
		t.Fatalf("olga's sessions (3 logins and addUser's): %d %s", status, raw)
	}
	var current int
	for _, v := range list {
		if v.Current {
			current++
		}
	}
	if current != 1 {
		t.Fatalf("%d sessions marked current, want 1: %+v", current, list)
	}
	// End session b by its ID.
	if status, _ := call(t, hs, "DELETE", path+"/"+sessionID(b), a, nil); status != http.StatusNoContent {
		t.Fatalf("revoke one: %d", status)
	}
	if status, _ := call(t, hs, "GET", "/api/environments", b, nil); status != http.StatusUnauthorized {
		t.Fatalf("a revoked session still works: %d", status)
	}
	if status, _ := call(t, hs, "DELETE", path+"/"+sessionID(b), a, nil); status != http.StatusNotFound {
		t.Fatalf("revoking it again: %d", status)
	}
	// Olga may not see the administrator's sessions.
	if status, _ := call(t, hs, "GET", "/api/users/1/sessions", a, nil); status != http.StatusForbidden {
		t.Fatalf("olga lists the admin's sessions: %d", status)
	}
	// Log out: a ends.
	if status, _ := call(t, hs, "DELETE", "/api/auth", a, nil); status != http.StatusNoContent {
		t.Fatalf("log out: %d", status)
	}
	if status, _ := call(t, hs, "GET", "/api/environments", a, nil); status != http.StatusUnauthorized {
		t.Fatalf("a logged-out token still works: %d", status)
	}
	// The administrator ends all of olga's sessions.
	if status, _ := call(t, hs, "DELETE", path, admin, nil); status != http.StatusNoContent {
		t.Fatalf("admin revokes all: %d", status)
	}
	if status, _ := call(t, hs, "GET", "/api/environments", c, nil); status != http.StatusUnauthorized {
		t.Fatalf("a session the admin ended still works: %d", status)
	}
	if status, _ := call(t, hs, "GET", "/api/environments", admin, nil); status != http.StatusOK {
		t.Fatalf("the admin's own session ended too: %d", status)
	}
}
