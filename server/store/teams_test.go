package store

import (
	"errors"
	"fmt"
	"testing"
)

func TestTeamsAndUserDeletion(t *testing.T) {
	s, _ := open(t)
	var ids []uint64
	for _, name := range []string{"ann", "bob"} {
		u := &User{Username: name, Role: "operator"}
		if err := s.CreateUser(u); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	var missing *MissingUsersError
	if err := s.CreateTeam(&Team{Name: "ships", Members: []uint64{ids[0], 41, 42}}); !errors.As(err, &missing) || fmt.Sprint(missing.IDs) != "[41 42]" {
		t.Fatalf("team with unknown members: %v", err)
	}
	tm := &Team{Name: "ships", Members: []uint64{ids[1], ids[0], ids[1]}}
	if err := s.CreateTeam(tm); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(tm.Members) != fmt.Sprint(ids) {
		t.Errorf("members %v, want sorted and unique %v", tm.Members, ids)
	}
	if err := s.CreateTeam(&Team{Name: "Ships"}); !errors.Is(err, ErrExists) {
		t.Errorf("same name in other case: %v", err)
	}
	if _, err := s.SetTeamMembers(99, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("members of a missing team: %v", err)
	}

	// Deleting a user drops it from its teams; a guard can veto a deletion.
	veto := errors.New("veto")
	if _, err := s.DeleteUser(ids[0], func([]User) error { return veto }); !errors.Is(err, veto) {
		t.Fatalf("vetoed delete: %v", err)
	}
	if n, _ := s.UserCount(); n != 2 {
		t.Fatalf("a vetoed delete removed the user: %d left", n)
	}
	if _, err := s.DeleteUser(ids[0], nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.Team(tm.ID)
	if err != nil || fmt.Sprint(got.Members) != fmt.Sprint(ids[1:]) {
		t.Fatalf("team after deleting a member: %+v %v", got, err)
	}
	if _, err := s.UserByID(ids[0]); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted user: %v", err)
	}
	if err := s.DeleteTeam(tm.ID); err != nil {
		t.Fatal(err)
	}
	if teams, _ := s.Teams(); len(teams) != 0 {
		t.Errorf("teams after delete: %+v", teams)
	}
}

func TestUpdateUserKeepsNameAndRunsGuard(t *testing.T) {
	s, _ := open(t)
	u := &User{Username: "ann", Role: "administrator"}
	if err := s.CreateUser(u); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateUser(u.ID, func(u *User) error { u.Username = "eve"; return nil }, nil); err == nil {
		t.Error("renamed a user")
	}
	noAdmin := func(all []User) error {
		for _, u := range all {
			if u.Role == "administrator" {
				return nil
			}
		}
		return errors.New("no administrator")
	}
	if _, err := s.UpdateUser(u.ID, func(u *User) error { u.Role = "operator"; return nil }, noAdmin); err == nil {
		t.Error("the guard did not veto")
	}
	if got, _ := s.UserByName("ann"); got.Role != "administrator" {
		t.Errorf("vetoed change stored: %+v", got)
	}
}
