package store

import (
	"bytes"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// User is an account of the web UI and API.
type User struct {
	ID           uint64 `json:"id"`
	Username     string `json:"username"`
	PasswordHash []byte `json:"passwordHash"` // bcrypt
	Role         string `json:"role"`
}

// CreateUser adds a user; the username must be free.
func (s *Store) CreateUser(u *User) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bUsers)
		if b.Get([]byte("n/"+u.Username)) != nil {
			return fmt.Errorf("user %q: %w", u.Username, ErrExists)
		}
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		u.ID = id
		if err := putJSON(b, []byte("n/"+u.Username), u); err != nil {
			return err
		}
		return nil
	})
}

// UserByName returns the user with that username.
func (s *Store) UserByName(name string) (*User, error) {
	var u User
	err := s.db.View(func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bUsers), []byte("n/"+name), &u) })
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// UserCount returns how many users exist.
func (s *Store) UserCount() (int, error) {
	var n int
	err := s.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(bUsers).Stats().KeyN; return nil })
	return n, err
}

// Users returns every user, by username.
func (s *Store) Users() ([]User, error) {
	out := []User{}
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = allUsers(tx)
		return err
	})
	return out, err
}

// UserByID returns user id.
func (s *Store) UserByID(id uint64) (*User, error) {
	var u *User
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		u, err = userByID(tx, id)
		return err
	})
	return u, err
}

// UserGuard checks every user as they would be after a change, inside the
// change's write transaction; an error cancels the change. It keeps
// invariants such as "one administrator remains" safe from concurrent
// changes.
type UserGuard func(after []User) error

// UpdateUser applies fn to user id, then guard to all users, inside one write
// transaction. fn must only change the record, and not its ID or username.
func (s *Store) UpdateUser(id uint64, fn func(*User) error, guard UserGuard) (*User, error) {
	var u *User
	err := s.update(func(tx *bolt.Tx) error {
		var err error
		if u, err = userByID(tx, id); err != nil {
			return err
		}
		name := u.Username
		if err := fn(u); err != nil {
			return err
		}
		if u.ID != id || u.Username != name {
			return fmt.Errorf("user %d: the ID and username cannot change", id)
		}
		if err := putJSON(tx.Bucket(bUsers), []byte("n/"+name), u); err != nil {
			return err
		}
		return runGuard(tx, guard)
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

// DeleteUser removes user id and its team memberships, then runs guard on
// the users left, inside one write transaction. It returns the deleted user.
func (s *Store) DeleteUser(id uint64, guard UserGuard) (*User, error) {
	var u *User
	err := s.update(func(tx *bolt.Tx) error {
		var err error
		if u, err = userByID(tx, id); err != nil {
			return err
		}
		if err := tx.Bucket(bUsers).Delete([]byte("n/" + u.Username)); err != nil {
			return err
		}
		if err := removeMember(tx, id); err != nil {
			return err
		}
		if err := forgetKubeUser(tx, id); err != nil {
			return err
		}
		return runGuard(tx, guard)
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

func runGuard(tx *bolt.Tx, guard UserGuard) error {
	if guard == nil {
		return nil
	}
	all, err := allUsers(tx)
	if err != nil {
		return err
	}
	return guard(all)
}

// allUsers reads every user. Users are few (people, not devices), so lookups
// by ID walk them rather than keep a second index.
func allUsers(tx *bolt.Tx) ([]User, error) {
	out := []User{}
	c := tx.Bucket(bUsers).Cursor()
	prefix := []byte("n/")
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var u User
		if err := json.Unmarshal(v, &u); err != nil {
			return nil, fmt.Errorf("user %q: %w", k[len(prefix):], err)
		}
		out = append(out, u)
	}
	return out, nil
}

func userByID(tx *bolt.Tx, id uint64) (*User, error) {
	all, err := allUsers(tx)
	if err != nil {
		return nil, err
	}
	for i := range all {
		if all[i].ID == id {
			return &all[i], nil
		}
	}
	return nil, fmt.Errorf("user %d: %w", id, ErrNotFound)
}

// userIDs is the set of existing user IDs.
func userIDs(tx *bolt.Tx) (map[uint64]bool, error) {
	all, err := allUsers(tx)
	if err != nil {
		return nil, err
	}
	ids := make(map[uint64]bool, len(all))
	for _, u := range all {
		ids[u.ID] = true
	}
	return ids, nil
}
