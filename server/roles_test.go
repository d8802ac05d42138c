package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"outpost/server/store"
)

// addUser stores a user with role and password (hashed at bcrypt's minimum
// cost, for speed) and returns it with a session token.
func addUser(t *testing.T, s *Server, name, role, password string) (*store.User, string) {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	u := &store.User{Username: name, PasswordHash: hash, Role: role}
	if err := s.store.CreateUser(u); err != nil {
		t.Fatal(err)
	}
	return u, s.sessions.issue(u)
}

// call sends an API request with token (none if empty) and a JSON body (none
// if nil), returning the status and the answer's body.
func call(t *testing.T, hs *httptest.Server, method, path, token string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, hs.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// publicPatterns are the only routes allowed outside the role check, besides
// the edge endpoints (/edge/...). An API route marked public fails the test.
var publicPatterns = map[string]bool{
	"/":              true, // the UI: its own session check
	"GET /healthz":   true,
	"POST /api/auth": true,
	"GET /setup":     true,
	"POST /setup":    true,
}

var wildcardRE = regexp.MustCompile(`\{[^}]*\}`)

// TestEveryRouteChecksRoles walks the route table, which is exactly what
// routes() registers, against no token and every role: 401 without a token,
// 403 when the role lacks the route's permission, and anything else when it
// holds it. Wildcards are filled with the caller's own user ID, so routes on
// "your own account" (permAccount) pass the handler's own check too.
func TestEveryRouteChecksRoles(t *testing.T) {
	s, hs := testServer(t)
	ids := map[string]uint64{}
	tokens := map[string]string{}
	for _, role := range Roles {
		u, tok := addUser(t, s, role, role, "password-"+role)
		ids[role], tokens[role] = u.ID, tok
	}
	seen := map[string]bool{}
	for _, rt := range s.routeTable() {
		if seen[rt.pattern] {
			t.Errorf("%s: twice in the route table", rt.pattern)
		}
		seen[rt.pattern] = true
		method, path, ok := strings.Cut(rt.pattern, " ")
		if !ok {
			method, path = "", rt.pattern
		}
		if rt.perm == permPublic {
			if rt.public == nil || rt.api != nil {
				t.Errorf("%s: a public route needs a plain handler and no API handler", rt.pattern)
			}
			if !publicPatterns[rt.pattern] && !strings.HasPrefix(path, "/edge/") {
				t.Errorf("%s: public (no role check), but only /edge/..., /healthz, the UI, login and setup may be", rt.pattern)
			}
			continue
		}
		if rt.api == nil || rt.public != nil {
			t.Errorf("%s: an API route needs an API handler and no plain one", rt.pattern)
			continue
		}
		if _, known := grants[rt.perm]; !known {
			t.Errorf("%s: permission %q is not in grants", rt.pattern, rt.perm)
		}
		if method == "" {
			method = http.MethodGet
		}
		var body any
		if method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
			body = map[string]any{}
		}
		fill := func(id uint64) string {
			p := strings.ReplaceAll(path, "{$}", "")
			return wildcardRE.ReplaceAllString(p, strconv.FormatUint(id, 10))
		}
		if status, b := call(t, hs, method, fill(1), "", body); status != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d %s, want 401", rt.pattern, status, b)
		}
		for _, role := range Roles {
			status, b := call(t, hs, method, fill(ids[role]), tokens[role], body)
			switch allowed := can(role, rt.perm); {
			case !allowed && status != http.StatusForbidden:
				t.Errorf("%s as %s (lacks %s): %d %s, want 403", rt.pattern, role, rt.perm, status, b)
			case allowed && (status == http.StatusUnauthorized || status == http.StatusForbidden):
				t.Errorf("%s as %s (holds %s): %d %s", rt.pattern, role, rt.perm, status, b)
			}
			if strings.HasPrefix(rt.pattern, "DELETE ") && (path == "/api/auth" || strings.Contains(path, "/sessions")) {
				// It ended the caller's session (or others of the role's):
				// the next routes need a live one.
				for r := range tokens {
					tokens[r] = s.sessions.issue(&store.User{Username: r, Role: r})
				}
			}
		}
	}
}

// TestPermissionMatrix pins grants: changing who may do what must change
// this table too, on purpose.
func TestPermissionMatrix(t *testing.T) {
	const (
		A = RoleAdmin
		E = RoleEnvAdmin
		O = RoleOperator
		H = RoleHelpdesk
		S = RoleStandard
		R = RoleReadOnly
	)
	want := map[permission][]string{
		permAccount:       {A, E, O, H, S, R},
		permEnvRead:       {A, E, O, H, S, R},
		permEnvWrite:      {A, E, O},
		permSettingsWrite: {A, E},
		permKubeAccess:    {A, E},
		permUsersManage:   {A},
		permAuditRead:     {A},
		permBackup:        {A},
	}
	if len(grants) != len(want) {
		t.Errorf("grants has %d permissions, the test knows %d", len(grants), len(want))
	}
	for p, roles := range want {
		for _, role := range Roles {
			holds := strings.Contains(" "+strings.Join(roles, " ")+" ", " "+role+" ")
			if can(role, p) != holds {
				t.Errorf("can(%s, %s) = %v, want %v", role, p, !holds, holds)
			}
		}
	}
	if can("root", permEnvRead) || can(RoleAdmin, "environments:delete-everything") || can(RoleAdmin, permPublic) {
		t.Error("an unknown role or permission is granted")
	}
}
