package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestCreateUserValidatesAllAtOnce(t *testing.T) {
	s, hs := testServer(t)
	_, admin := addUser(t, s, "admin", RoleAdmin, "admin-password")

	status, b := call(t, hs, "POST", "/api/users", admin, map[string]string{"username": " bad name", "password": "short", "role": "root"})
	if status != http.StatusBadRequest {
		t.Fatalf("invalid user: %d %s", status, b)
	}
	var e apiError
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`username " bad name"`, "password: 8 to 72", `role "root": want one of administrator, environment-administrator`} {
		if !strings.Contains(e.Error, want) {
			t.Errorf("error %q lacks %q", e.Error, want)
		}
	}
	if status, b := call(t, hs, "POST", "/api/users", admin, map[string]string{"username": "x", "password": strings.Repeat("p", 73), "role": RoleOperator}); status != 400 || !strings.Contains(string(b), "password") {
		t.Errorf("73-byte password (bcrypt reads 72): %d %s", status, b)
	}

	status, b = call(t, hs, "POST", "/api/users", admin, map[string]string{"username": "olga", "password": "olga-password", "role": RoleOperator})
	var u userView
	if status != http.StatusCreated || json.Unmarshal(b, &u) != nil || u.Username != "olga" || u.Role != RoleOperator || u.ID == 0 {
		t.Fatalf("create: %d %s", status, b)
	}
	if strings.Contains(string(b), "assword") {
		t.Errorf("the answer shows the password or its hash: %s", b)
	}
	if status, _ := call(t, hs, "POST", "/api/users", admin, map[string]string{"username": "olga", "password": "other-password", "role": RoleHelpdesk}); status != http.StatusConflict {
		t.Errorf("duplicate username: %d", status)
	}
	// The new user can log in.
	if status, b := call(t, hs, "POST", "/api/auth", "", map[string]string{"username": "olga", "password": "olga-password"}); status != 200 {
		t.Errorf("login as the new user: %d %s", status, b)
	}
	status, b = call(t, hs, "GET", "/api/users", admin, nil)
	var list []userView
	if status != 200 || json.Unmarshal(b, &list) != nil || len(list) != 2 || list[0].Username != "admin" || list[1].Username != "olga" {
		t.Errorf("list: %d %s", status, b)
	}
}

func TestPasswordAndRoleChanges(t *testing.T) {
	s, hs := testServer(t)
	adminU, admin := addUser(t, s, "admin", RoleAdmin, "admin-password")
	olgaU, olga := addUser(t, s, "olga", RoleOperator, "olga-password")
	olgaOther := s.sessions.issue(olgaU)
	path := func(id uint64) string { return fmt.Sprintf("/api/users/%d", id) }

	// Others' accounts and roles are the administrator's.
	if status, _ := call(t, hs, "GET", path(adminU.ID), olga, nil); status != http.StatusForbidden {
		t.Errorf("operator reads the admin: %d", status)
	}
	if status, _ := call(t, hs, "PATCH", path(adminU.ID), olga, map[string]string{"password": "new-admin-pw"}); status != http.StatusForbidden {
		t.Errorf("operator sets the admin's password: %d", status)
	}
	if status, _ := call(t, hs, "PATCH", path(olgaU.ID), olga, map[string]string{"role": RoleAdmin}); status != http.StatusForbidden {
		t.Errorf("operator promotes herself: %d", status)
	}

	// Her own password, with the current one.
	if status, b := call(t, hs, "PATCH", path(olgaU.ID), olga, map[string]string{"password": "olga-new-password"}); status != 400 || !strings.Contains(string(b), "currentPassword") {
		t.Errorf("own password without the current one: %d %s", status, b)
	}
	if status, _ := call(t, hs, "PATCH", path(olgaU.ID), olga, map[string]string{"password": "olga-new-password", "currentPassword": "wrong"}); status != 400 {
		t.Errorf("own password with a wrong current one: %d", status)
	}
	if status, b := call(t, hs, "PATCH", path(olgaU.ID), olga, map[string]string{"password": "olga-new-password", "currentPassword": "olga-password"}); status != 200 {
		t.Fatalf("own password: %d %s", status, b)
	}
	if _, ok := s.sessions.lookup(olga); !ok {
		t.Error("the session that changed its password ended")
	}
	if _, ok := s.sessions.lookup(olgaOther); ok {
		t.Error("her other session survives the password change")
	}
	if _, err := s.login("olga", "olga-password", "192.0.2.1"); err == nil {
		t.Error("the old password still works")
	}
	if _, err := s.login("olga", "olga-new-password", "192.0.2.1"); err != nil {
		t.Errorf("the new password: %v", err)
	}

	// The administrator changes her role: her sessions end.
	status, b := call(t, hs, "PATCH", path(olgaU.ID), admin, map[string]string{"role": RoleHelpdesk})
	if status != 200 || !strings.Contains(string(b), `"role":"helpdesk"`) {
		t.Fatalf("role change: %d %s", status, b)
	}
	if status, _ := call(t, hs, "GET", "/api/environments", olga, nil); status != http.StatusUnauthorized {
		t.Errorf("session after a role change: %d", status)
	}

	// The last administrator can be neither demoted nor deleted.
	if status, b := call(t, hs, "PATCH", path(adminU.ID), admin, map[string]string{"role": RoleOperator}); status != http.StatusConflict || !strings.Contains(string(b), "last administrator") {
		t.Errorf("demote the last administrator: %d %s", status, b)
	}
	if status, b := call(t, hs, "DELETE", path(adminU.ID), admin, nil); status != http.StatusConflict || !strings.Contains(string(b), "last administrator") {
		t.Errorf("delete the last administrator: %d %s", status, b)
	}
	// With a second one, the first may step down, and its session goes on
	// with the new role.
	if status, b := call(t, hs, "PATCH", path(olgaU.ID), admin, map[string]string{"role": RoleAdmin}); status != 200 {
		t.Fatalf("promote: %d %s", status, b)
	}
	if status, b := call(t, hs, "PATCH", path(adminU.ID), admin, map[string]string{"role": RoleReadOnly}); status != 200 {
		t.Fatalf("step down: %d %s", status, b)
	}
	if status, _ := call(t, hs, "GET", "/api/users", admin, nil); status != http.StatusForbidden {
		t.Errorf("former admin lists users: %d", status)
	}
	if status, _ := call(t, hs, "GET", "/api/environments", admin, nil); status != 200 {
		t.Errorf("former admin, now read-only, lists environments: %d", status)
	}
	if status, _ := call(t, hs, "PATCH", path(adminU.ID), admin, map[string]any{}); status != 400 {
		t.Errorf("empty change: %d", status)
	}
}

func TestDeleteUserLeavesTeams(t *testing.T) {
	s, hs := testServer(t)
	_, admin := addUser(t, s, "admin", RoleAdmin, "admin-password")
	olgaU, olga := addUser(t, s, "olga", RoleOperator, "olga-password")
	hugoU, _ := addUser(t, s, "hugo", RoleHelpdesk, "hugo-password")

	status, b := call(t, hs, "POST", "/api/teams", admin, map[string]any{"name": "", "members": []uint64{olgaU.ID, 98, 99}})
	if status != 400 || !strings.Contains(string(b), "name: required") || !strings.Contains(string(b), "no user with id 98, 99") {
		t.Errorf("invalid team: %d %s", status, b)
	}
	status, b = call(t, hs, "POST", "/api/teams", admin, map[string]any{"name": "ships", "members": []uint64{hugoU.ID, olgaU.ID, olgaU.ID}})
	var team struct {
		ID      uint64
		Members []uint64
	}
	if status != http.StatusCreated || json.Unmarshal(b, &team) != nil || len(team.Members) != 2 {
		t.Fatalf("create team: %d %s", status, b)
	}
	if status, _ := call(t, hs, "POST", "/api/teams", admin, map[string]any{"name": "SHIPS"}); status != http.StatusConflict {
		t.Errorf("duplicate team name: %d", status)
	}
	members := fmt.Sprintf("/api/teams/%d/members", team.ID)
	if status, b := call(t, hs, "PUT", members, admin, map[string]any{"members": []uint64{olgaU.ID}}); status != 200 || !strings.Contains(string(b), fmt.Sprintf(`"members":[%d]`, olgaU.ID)) {
		t.Errorf("set members: %d %s", status, b)
	}
	if status, _ := call(t, hs, "PUT", "/api/teams/77/members", admin, map[string]any{"members": []uint64{}}); status != 404 {
		t.Errorf("members of a missing team: %d", status)
	}

	if status, b := call(t, hs, "DELETE", fmt.Sprintf("/api/users/%d", olgaU.ID), admin, nil); status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", status, b)
	}
	if _, ok := s.sessions.lookup(olga); ok {
		t.Error("a deleted user's session survives")
	}
	if tm, err := s.store.Team(team.ID); err != nil || len(tm.Members) != 0 {
		t.Errorf("team after its member was deleted: %+v %v", tm, err)
	}
	if status, _ := call(t, hs, "DELETE", fmt.Sprintf("/api/teams/%d", team.ID), admin, nil); status != http.StatusNoContent {
		t.Errorf("delete team: %d", status)
	}
	if status, b := call(t, hs, "GET", "/api/teams", admin, nil); status != 200 || string(b) != "[]\n" {
		t.Errorf("teams after delete: %d %s", status, b)
	}
}
