package store

import (
	"errors"
	"fmt"
	"testing"
)

// TestNamespaceAccess: assignments are stored per environment and
// namespace, refuse unknown users and teams all at once, and go with the
// user or the environment they name.
func TestNamespaceAccess(t *testing.T) {
	s, _ := open(t)
	var users []uint64
	for _, name := range []string{"ann", "bob"} {
		u := &User{Username: name, Role: "read-only-user"}
		if err := s.CreateUser(u); err != nil {
			t.Fatal(err)
		}
		users = append(users, u.ID)
	}
	tm := &Team{Name: "ships", Members: users[1:]}
	if err := s.CreateTeam(tm); err != nil {
		t.Fatal(err)
	}
	e1, e2 := &Environment{Name: "one"}, &Environment{Name: "two"}
	for _, e := range []*Environment{e1, e2} {
		if err := s.CreateEnvironment(e); err != nil {
			t.Fatal(err)
		}
	}
	var missing *MissingAssigneesError
	err := s.PutNamespaceAccess(e1.ID, "shop", NamespaceAccess{UserIDs: []uint64{users[0], 77}, TeamIDs: []uint64{88}})
	if !errors.As(err, &missing) || fmt.Sprint(missing.Users, missing.Teams) != "[77] [88]" {
		t.Fatalf("unknown user and team: %v", err)
	}
	if err := s.PutNamespaceAccess(99, "shop", NamespaceAccess{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown environment: %v", err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.PutNamespaceAccess(e1.ID, "shop", NamespaceAccess{UserIDs: []uint64{users[1], users[0], users[0]}}))
	must(s.PutNamespaceAccess(e1.ID, "till", NamespaceAccess{TeamIDs: []uint64{tm.ID}}))
	must(s.PutNamespaceAccess(e2.ID, "shop", NamespaceAccess{UserIDs: []uint64{users[0]}}))
	got, err := s.NamespacesAccess(e1.ID)
	must(err)
	if fmt.Sprint(got) != fmt.Sprintf("map[shop:{[%d %d] []} till:{[] [%d]}]", users[0], users[1], tm.ID) {
		t.Errorf("environment 1: %v", got)
	}
	for _, u := range users {
		if added, err := s.MarkKubeUser(e1.ID, u, 100); err != nil || !added {
			t.Fatalf("mark %d: %v %v", u, added, err)
		}
	}
	if added, err := s.MarkKubeUser(e1.ID, users[0], 200); err != nil || added {
		t.Errorf("second mark: added %v, %v", added, err)
	}
	if ids, err := s.KubeEnvironments(); err != nil || fmt.Sprint(ids) != fmt.Sprint([]uint64{e1.ID}) {
		t.Errorf("environments with kube users: %v %v, want [%d]", ids, err, e1.ID)
	}

	// Deleting ann takes her off every namespace and out of the users.
	if _, err := s.DeleteUser(users[0], nil); err != nil {
		t.Fatal(err)
	}
	got, _ = s.NamespacesAccess(e1.ID)
	if fmt.Sprint(got["shop"].UserIDs) != fmt.Sprint(users[1:]) {
		t.Errorf("after ann's deletion, shop: %v", got["shop"])
	}
	if got, _ := s.NamespacesAccess(e2.ID); len(got) != 0 {
		t.Errorf("after ann's deletion, environment 2 still assigns: %v", got)
	}
	if ku, _ := s.KubeUsers(e1.ID); fmt.Sprint(ku) != fmt.Sprint(users[1:]) {
		t.Errorf("kube users after deletion: %v", ku)
	}
	// An empty assignment removes the entry; deleting the environment
	// removes what is left.
	must(s.PutNamespaceAccess(e1.ID, "till", NamespaceAccess{}))
	must(s.QueueTargetCommand(&Command{Env: e1.ID, Kind: "kube.access"}, func(Command) bool { return false }, Target{KubeAccess: "abc"}))
	if h, _, _ := s.KubeAccessSent(e1.ID); h != "abc" {
		t.Errorf("sent hash %q", h)
	}
	must(s.RetryKubeAccess(e1.ID, "other", 50))
	if h, at, _ := s.KubeAccessSent(e1.ID); h != "abc" || at != 0 {
		t.Errorf("a failure of grants sent before the last: %q %d", h, at)
	}
	must(s.RetryKubeAccess(e1.ID, "abc", 50))
	if h, at, _ := s.KubeAccessSent(e1.ID); h != "" || at != 50 {
		t.Errorf("after the last grants failed: %q %d, want a retry at 50", h, at)
	}
	must(s.DeleteEnvironment(e1.ID))
	got, _ = s.NamespacesAccess(e1.ID)
	ku, _ := s.KubeUsers(e1.ID)
	h, at, _ := s.KubeAccessSent(e1.ID)
	if len(got) != 0 || len(ku) != 0 || h != "" || at != 0 {
		t.Errorf("after the environment's deletion: %v %v %q", got, ku, h)
	}
}
