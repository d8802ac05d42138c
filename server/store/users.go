package store

import (
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
