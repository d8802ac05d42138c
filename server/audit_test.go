package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
)

func TestAuditRecordsLoginsAndChanges(t *testing.T) {
	s, hs := testServer(t)
	if _, err := s.ensureAdmin("admin-password"); err != nil {
		t.Fatal(err)
	}
	if status, _ := call(t, hs, "POST", "/api/auth", "", map[string]string{"username": "admin", "password": "wrong"}); status != 401 {
		t.Fatalf("failed login: %d", status)
	}
	status, b := call(t, hs, "POST", "/api/auth", "", map[string]string{"username": "admin", "password": "admin-password"})
	var auth struct{ Token string }
	if status != 200 || json.Unmarshal(b, &auth) != nil {
		t.Fatalf("login: %d %s", status, b)
	}
	if status, b := call(t, hs, "POST", "/api/users", auth.Token, map[string]string{"username": "olga", "password": "olga-password", "role": RoleOperator}); status != 201 {
		t.Fatalf("create user: %d %s", status, b)
	}
	_, olga := addUser(t, s, "hugo", RoleHelpdesk, "hugo-password")
	if status, _ := call(t, hs, "GET", "/api/audit", olga, nil); status != http.StatusForbidden {
		t.Fatalf("helpdesk reads the audit log: %d", status)
	}

	status, b = call(t, hs, "GET", "/api/audit", auth.Token, nil)
	var page auditPage
	if status != 200 || json.Unmarshal(b, &page) != nil {
		t.Fatalf("audit: %d %s", status, b)
	}
	type row struct{ actor, action, target string }
	want := []row{ // newest first
		{"hugo", auditAccessDenied, "GET /api/audit"},
		{"admin", auditUserCreate, "user olga"},
		{"admin", auditLogin, "user admin"},
		{"anonymous", auditLoginFailed, "user admin"},
	}
	if len(page.Entries) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(page.Entries), len(want), page.Entries)
	}
	for i, w := range want {
		e := page.Entries[i]
		if e.Actor != w.actor || e.Action != w.action || e.Target != w.target || e.Time == 0 {
			t.Errorf("entry %d = %+v, want %+v", i, e, w)
		}
		if e.Remote == "" {
			t.Errorf("entry %d has no remote address", i)
		}
	}

	// Paging: two at a time, following next.
	var got []uint64
	next := uint64(0)
	for range 3 {
		q := "/api/audit?limit=2"
		if next != 0 {
			q += fmt.Sprintf("&before=%d", next)
		}
		status, b := call(t, hs, "GET", q, auth.Token, nil)
		var p auditPage
		if status != 200 || json.Unmarshal(b, &p) != nil {
			t.Fatalf("%s: %d %s", q, status, b)
		}
		for _, e := range p.Entries {
			got = append(got, e.ID)
		}
		if next = p.Next; next == 0 {
			break
		}
	}
	// The GETs above were not audited, so the log still holds the 4 entries.
	if fmt.Sprint(got) != "[4 3 2 1]" {
		t.Errorf("paged IDs %v, want [4 3 2 1]", got)
	}
	if status, b := call(t, hs, "GET", "/api/audit?limit=0&before=x", auth.Token, nil); status != 400 {
		t.Errorf("bad paging: %d %s", status, b)
	}
}
