package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// bKube holds who may reach what in Kubernetes environments:
//
//	n/ENV/NAMESPACE  -> NamespaceAccess (JSON): the users and teams assigned to it
//	u/ENV/USER       -> first use (Unix seconds, 8 bytes): the users who have
//	                    worked with the cluster, whose service accounts it keeps
//	s/ENV            -> the hash of the grants last queued to the agent
//
// ENV and USER are 8 bytes big-endian.
var bKube = []byte("kube_access")

func createKube10(tx *bolt.Tx) error {
	_, err := tx.CreateBucketIfNotExists(bKube)
	return err
}

// NamespaceAccess is who is assigned a namespace of a cluster.
type NamespaceAccess struct {
	UserIDs []uint64 `json:"userIds"`
	TeamIDs []uint64 `json:"teamIds"`
}

func kubeKey(kind byte, env uint64, rest []byte) []byte {
	k := append([]byte{kind, '/'}, u64(env)...)
	return append(k, rest...)
}

// MissingAssigneesError lists the users and teams a namespace assignment
// named that do not exist.
type MissingAssigneesError struct{ Users, Teams []uint64 }

func (e *MissingAssigneesError) Error() string {
	var parts []string
	if len(e.Users) > 0 {
		parts = append(parts, fmt.Sprintf("no user with id %v", e.Users))
	}
	if len(e.Teams) > 0 {
		parts = append(parts, fmt.Sprintf("no team with id %v", e.Teams))
	}
	return strings.Join(parts, "; ")
}

// PutNamespaceAccess sets who is assigned namespace ns of environment env;
// nobody removes the entry. Every user and team must exist.
func (s *Store) PutNamespaceAccess(env uint64, ns string, a NamespaceAccess) error {
	return s.update(func(tx *bolt.Tx) error {
		if tx.Bucket(bEnvironments).Get(u64(env)) == nil {
			return ErrNotFound
		}
		var missing MissingAssigneesError
		if err := checkMembers(tx, a.UserIDs); err != nil {
			var mu *MissingUsersError
			if !errors.As(err, &mu) {
				return err
			}
			missing.Users = mu.IDs
		}
		for _, id := range normMembers(a.TeamIDs) {
			if tx.Bucket(bTeams).Get(u64(id)) == nil {
				missing.Teams = append(missing.Teams, id)
			}
		}
		if len(missing.Users)+len(missing.Teams) > 0 {
			return &missing
		}
		b := tx.Bucket(bKube)
		k := kubeKey('n', env, []byte(ns))
		a.UserIDs, a.TeamIDs = normMembers(a.UserIDs), normMembers(a.TeamIDs)
		if len(a.UserIDs) == 0 && len(a.TeamIDs) == 0 {
			return b.Delete(k)
		}
		return putJSON(b, k, a)
	})
}

// NamespacesAccess returns who is assigned each namespace of environment env.
func (s *Store) NamespacesAccess(env uint64) (map[string]NamespaceAccess, error) {
	out := map[string]NamespaceAccess{}
	err := s.db.View(func(tx *bolt.Tx) error {
		prefix := kubeKey('n', env, nil)
		c := tx.Bucket(bKube).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var a NamespaceAccess
			if err := json.Unmarshal(v, &a); err != nil {
				return err
			}
			out[string(k[len(prefix):])] = a
		}
		return nil
	})
	return out, err
}

// MarkKubeUser records that user worked with the cluster of environment
// env, and reports whether that is new.
func (s *Store) MarkKubeUser(env, user uint64, at int64) (bool, error) {
	k := kubeKey('u', env, u64(user))
	var known bool
	err := s.db.View(func(tx *bolt.Tx) error {
		known = tx.Bucket(bKube).Get(k) != nil
		return nil
	})
	if err != nil || known {
		return false, err
	}
	err = s.update(func(tx *bolt.Tx) error {
		if tx.Bucket(bEnvironments).Get(u64(env)) == nil {
			return ErrNotFound
		}
		return tx.Bucket(bKube).Put(k, u64(uint64(at)))
	})
	return err == nil, err
}

// KubeUsers returns the users who worked with the cluster of environment
// env, by ID.
func (s *Store) KubeUsers(env uint64) ([]uint64, error) {
	var out []uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		prefix := kubeKey('u', env, nil)
		c := tx.Bucket(bKube).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			out = append(out, binary.BigEndian.Uint64(k[len(prefix):]))
		}
		return nil
	})
	slices.Sort(out)
	return out, err
}

// KubeEnvironments returns the environments that have users who worked
// with their cluster or grants sent to it, by ID: the only ones the
// reconciler has anything to send to.
func (s *Store) KubeEnvironments() ([]uint64, error) {
	seen := map[uint64]bool{}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bKube).Cursor()
		for _, kind := range []byte{'u', 's'} {
			prefix := []byte{kind, '/'}
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				seen[binary.BigEndian.Uint64(k[2:10])] = true
			}
		}
		return nil
	})
	out := slices.Sorted(maps.Keys(seen))
	return out, err
}

// retryMark starts the 's' entry of grants the agent could not apply: the
// Unix time from which they are sent again follows it.
const retryMark = "retry "

// KubeAccessSent returns the hash of the grants last queued to environment
// env's agent ("" if none), or, when the agent could not apply them, the
// time from which they are to be sent again (retryAt, hash "").
func (s *Store) KubeAccessSent(env uint64) (hash string, retryAt int64, err error) {
	var v string
	err = s.db.View(func(tx *bolt.Tx) error {
		v = string(tx.Bucket(bKube).Get(kubeKey('s', env, nil)))
		return nil
	})
	if at, ok := strings.CutPrefix(v, retryMark); ok {
		retryAt, _ = strconv.ParseInt(at, 10, 64)
		return "", retryAt, err
	}
	return v, 0, err
}

// RetryKubeAccess records that the grants of hash, if they are the last
// sent to environment env, were not applied: they are sent again from
// retryAt (Unix seconds), not at once, so an agent that keeps failing gets
// one command per retry period rather than one per exchange.
func (s *Store) RetryKubeAccess(env uint64, hash string, retryAt int64) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bKube)
		k := kubeKey('s', env, nil)
		if string(b.Get(k)) != hash {
			return nil
		}
		return b.Put(k, []byte(retryMark+strconv.FormatInt(retryAt, 10)))
	})
}

// forgetKube deletes, in tx, what environment env had of namespace access,
// users and grants sent.
func forgetKube(tx *bolt.Tx, env uint64) error {
	b := tx.Bucket(bKube)
	for _, kind := range []byte{'n', 'u', 's'} {
		if err := deletePrefix(b, kubeKey(kind, env, nil)); err != nil {
			return err
		}
	}
	return nil
}

// forgetKubeUser deletes, in tx, user's marks and namespace assignments.
func forgetKubeUser(tx *bolt.Tx, user uint64) error {
	b := tx.Bucket(bKube)
	return updateKubeEntries(b, func(k []byte, v []byte) ([]byte, bool, error) {
		switch {
		case k[0] == 'u' && binary.BigEndian.Uint64(k[len(k)-8:]) == user:
			return nil, true, nil
		case k[0] == 'n':
			var a NamespaceAccess
			if err := json.Unmarshal(v, &a); err != nil {
				return nil, false, err
			}
			if !slices.Contains(a.UserIDs, user) {
				return v, false, nil
			}
			a.UserIDs = slices.DeleteFunc(a.UserIDs, func(u uint64) bool { return u == user })
			if len(a.UserIDs) == 0 && len(a.TeamIDs) == 0 {
				return nil, true, nil
			}
			nv, err := json.Marshal(a)
			return nv, true, err
		}
		return v, false, nil
	})
}

// updateKubeEntries runs fn on every entry of b; where it reports a change,
// the entry becomes what fn returns (nil deletes it).
func updateKubeEntries(b *bolt.Bucket, fn func(k, v []byte) ([]byte, bool, error)) error {
	type change struct{ k, v []byte }
	var changes []change
	err := b.ForEach(func(k, v []byte) error {
		nv, changed, err := fn(k, v)
		if err == nil && changed {
			changes = append(changes, change{bytes.Clone(k), nv})
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, c := range changes {
		if c.v == nil {
			err = b.Delete(c.k)
		} else {
			err = b.Put(c.k, c.v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
