package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Team is a named set of users.
type Team struct {
	ID      uint64   `json:"id"`
	Name    string   `json:"name"`
	Members []uint64 `json:"members"` // user IDs, sorted
}

// CreateTeam stores t under a new ID, which it sets. The name must be free
// (compared without case) and every member must exist.
func (s *Store) CreateTeam(t *Team) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bTeams)
		taken := false
		err := b.ForEach(func(_, v []byte) error {
			var o Team
			if err := json.Unmarshal(v, &o); err != nil {
				return err
			}
			taken = taken || strings.EqualFold(o.Name, t.Name)
			return nil
		})
		if err != nil {
			return err
		}
		if taken {
			return fmt.Errorf("team %q: %w", t.Name, ErrExists)
		}
		if err := checkMembers(tx, t.Members); err != nil {
			return err
		}
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		t.ID = id
		t.Members = normMembers(t.Members)
		return putJSON(b, u64(id), t)
	})
}

// Team returns team id.
func (s *Store) Team(id uint64) (*Team, error) {
	var t Team
	err := s.db.View(func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bTeams), u64(id), &t) })
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// Teams returns every team, by ID.
func (s *Store) Teams() ([]Team, error) {
	out := []Team{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bTeams).ForEach(func(_, v []byte) error {
			var t Team
			if err := json.Unmarshal(v, &t); err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	return out, err
}

// DeleteTeam removes team id.
func (s *Store) DeleteTeam(id uint64) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bTeams)
		if b.Get(u64(id)) == nil {
			return fmt.Errorf("team %d: %w", id, ErrNotFound)
		}
		return b.Delete(u64(id))
	})
}

// SetTeamMembers replaces team id's members. Every member must exist.
func (s *Store) SetTeamMembers(id uint64, members []uint64) (*Team, error) {
	var t Team
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bTeams)
		if err := getJSON(b, u64(id), &t); err != nil {
			return fmt.Errorf("team %d: %w", id, err)
		}
		if err := checkMembers(tx, members); err != nil {
			return err
		}
		t.Members = normMembers(members)
		return putJSON(b, u64(id), &t)
	})
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// MissingUsersError lists the user IDs a team change named that do not
// exist.
type MissingUsersError struct{ IDs []uint64 }

func (e *MissingUsersError) Error() string {
	return fmt.Sprintf("no user with id %v", e.IDs)
}

// checkMembers returns a *MissingUsersError naming every member that is not
// a user.
func checkMembers(tx *bolt.Tx, members []uint64) error {
	if len(members) == 0 {
		return nil
	}
	ids, err := userIDs(tx)
	if err != nil {
		return err
	}
	var missing []uint64
	for _, m := range normMembers(members) {
		if !ids[m] {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		return &MissingUsersError{IDs: missing}
	}
	return nil
}

// removeMember drops user from every team, inside tx.
func removeMember(tx *bolt.Tx, user uint64) error {
	b := tx.Bucket(bTeams)
	var changed []Team
	err := b.ForEach(func(_, v []byte) error {
		var t Team
		if err := json.Unmarshal(v, &t); err != nil {
			return err
		}
		if i := slices.Index(t.Members, user); i >= 0 {
			t.Members = slices.Delete(t.Members, i, i+1)
			changed = append(changed, t)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Written after the walk: a bucket must not change under ForEach.
	for i := range changed {
		if err := putJSON(b, u64(changed[i].ID), &changed[i]); err != nil {
			return err
		}
	}
	return nil
}

// normMembers returns members sorted, without duplicates, never nil.
func normMembers(members []uint64) []uint64 {
	out := slices.Clone(members)
	slices.Sort(out)
	out = slices.Compact(out)
	if out == nil {
		out = []uint64{}
	}
	return out
}

// createTeamsAudit3 is schema 3: the teams and audit buckets.
func createTeamsAudit3(tx *bolt.Tx) error {
	for _, name := range []string{"teams", "audit"} {
		if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
			return fmt.Errorf("bucket %s: %w", name, err)
		}
	}
	return nil
}
