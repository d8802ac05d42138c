package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"

	bolt "go.etcd.io/bbolt"

	"outpost/protocol"
)

// Environment modes.
const (
	ModeAsync    = "async"
	ModeStandard = "standard"
)

// Environment is one managed edge device.
type Environment struct {
	ID      uint64 `json:"id"`
	Name    string `json:"name"`
	Mode    string `json:"mode"`
	Created int64  `json:"created"`
	Trusted bool   `json:"trusted"`
	// EdgeID and PublicKey are bound by the first agent that calls in.
	EdgeID    string `json:"edgeId,omitempty"`
	PublicKey []byte `json:"publicKey,omitempty"`
	// DeviceDH is the device's X25519 key agreement key, bound with them.
	DeviceDH []byte `json:"deviceDH,omitempty"`
	// LastCounter is the proof counter floor: every counter accepted from
	// the device is at most this (server/identity.go advance).
	LastCounter uint64 `json:"lastCounter,omitempty"`
	// EnrollKey is the hash of the enrollment secret in the edge key of an
	// environment not bound yet (protocol.EnrollKey): the first contact must
	// prove the secret, and binding clears it. Never shown by the API.
	EnrollKey []byte `json:"enrollKey,omitempty"`
	// Resync is set on every bound environment when the store turns out to
	// be a restored backup: the device's next request is answered with it
	// and nothing else, and only a request echoing it is served. Requests
	// made before the restore, which its counter floor no longer refuses,
	// cannot echo it. Never shown by the API.
	Resync []byte `json:"resync,omitempty"`
	// Frequencies overrides the global defaults field by field (0 = default).
	Frequencies *protocol.Frequencies `json:"frequencies,omitempty"`
	Agent       *protocol.AgentInfo   `json:"agent,omitempty"`
	// Platform is what the device runs, as the operator created the
	// environment for: "" (Docker) or "kubernetes". The agent reports its
	// own in Agent.
	Platform string `json:"platform,omitempty"`
	// LastCheckIn is flushed from memory in batches; the live value is the
	// server's.
	LastCheckIn int64 `json:"lastCheckIn,omitempty"`
	// TagIDs are the environment's tags; GroupID its environment group (0:
	// none). Dynamic edge groups follow the tags (see groups.go).
	TagIDs  []uint64 `json:"tagIds,omitempty"`
	GroupID uint64   `json:"groupId,omitempty"`
}

// CreateEnvironment stores e under a new ID, which it sets.
func (s *Store) CreateEnvironment(e *Environment) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bEnvironments)
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		e.ID = id
		return putJSON(b, u64(id), e)
	})
}

// CreateEnvironments stores es under new IDs, which it sets, in one
// transaction: bulk staging (and benchmarks) without a sync per record.
func (s *Store) CreateEnvironments(es []*Environment) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bEnvironments)
		for _, e := range es {
			id, err := b.NextSequence()
			if err != nil {
				return err
			}
			e.ID = id
			if err := putJSON(b, u64(id), e); err != nil {
				return err
			}
		}
		return nil
	})
}

// Environment returns the environment id.
func (s *Store) Environment(id uint64) (*Environment, error) {
	var e Environment
	err := s.db.View(func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bEnvironments), u64(id), &e) })
	if err != nil {
		return nil, err
	}
	return &e, nil
}

// UpdateEnvironment applies fn to environment id inside one write
// transaction. fn must only change the record.
func (s *Store) UpdateEnvironment(id uint64, fn func(*Environment) error) (*Environment, error) {
	return s.updateEnvironment(s.update, id, fn)
}

// UpdateEnvironmentShared is UpdateEnvironment for device exchanges: the
// transaction may be shared with other writers (batch), so it costs up to
// MaxBatchDelay more when alone and far less under a fleet. fn may be
// called more than once, each time with the record as stored.
func (s *Store) UpdateEnvironmentShared(id uint64, fn func(*Environment) error) (*Environment, error) {
	return s.updateEnvironment(s.batch, id, fn)
}

func (s *Store) updateEnvironment(write func(func(*bolt.Tx) error) error, id uint64, fn func(*Environment) error) (*Environment, error) {
	var e Environment
	err := write(func(tx *bolt.Tx) error {
		b := tx.Bucket(bEnvironments)
		e = Environment{}
		if err := getJSON(b, u64(id), &e); err != nil {
			return err
		}
		if err := fn(&e); err != nil {
			return err
		}
		return putJSON(b, u64(id), &e)
	})
	if err != nil {
		return nil, err
	}
	return &e, nil
}

// Environments returns every environment, by ID.
func (s *Store) Environments() ([]Environment, error) {
	var out []Environment
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bEnvironments).ForEach(func(_, v []byte) error {
			var e Environment
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			out = append(out, e)
			return nil
		})
	})
	return out, err
}

// EnvironmentsByID returns the environments ids that exist, in the order of
// ids, in one read transaction.
func (s *Store) EnvironmentsByID(ids []uint64) ([]Environment, error) {
	out := make([]Environment, 0, len(ids))
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bEnvironments)
		for _, id := range ids {
			var e Environment
			if err := getJSON(b, u64(id), &e); errors.Is(err, ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// DeleteEnvironment deletes environment id with its snapshot and snapshot
// history, and takes it off every static edge group, in one transaction.
func (s *Store) DeleteEnvironment(id uint64) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bEnvironments)
		if b.Get(u64(id)) == nil {
			return ErrNotFound
		}
		if err := b.Delete(u64(id)); err != nil {
			return err
		}
		if err := tx.Bucket(bSnapshots).Delete(u64(id)); err != nil {
			return err
		}
		if err := deletePrefix(tx.Bucket(bHistory), u64(id)); err != nil {
			return err
		}
		if err := updateAll(tx.Bucket(bEdgeGroups), func(g *EdgeGroup) bool {
			n := len(g.EnvironmentIDs)
			g.EnvironmentIDs = slices.DeleteFunc(g.EnvironmentIDs, func(e uint64) bool { return e == id })
			return len(g.EnvironmentIDs) != n
		}); err != nil {
			return err
		}
		if err := forgetKube(tx, id); err != nil {
			return err
		}
		return forgetEdgeWork(tx, id)
	})
}

// forgetEdgeWork deletes, in tx, what environment id had of commands, edge
// stacks and jobs: its command log and results, the content marks, its
// stack statuses, job targets and runs, and its place in jobs' target
// lists. Nothing is left for the reconciler to act on.
func forgetEdgeWork(tx *bolt.Tx, id uint64) error {
	for _, b := range [][]byte{bCommands, bResults, bBlobsSent} {
		if err := deletePrefix(tx.Bucket(b), u64(id)); err != nil {
			return err
		}
	}
	// Keyed stack|env, job|env and job|env|run: the environment is the
	// second 8 bytes.
	for _, b := range [][]byte{bStackStatus, bJobTargets, bJobRuns} {
		if err := deleteWhere(tx.Bucket(b), func(k []byte) bool {
			return len(k) >= 16 && bytes.Equal(k[8:16], u64(id))
		}); err != nil {
			return err
		}
	}
	return updateAll(tx.Bucket(bJobs), func(j *EdgeJob) bool {
		n := len(j.EnvironmentIDs)
		j.EnvironmentIDs = slices.DeleteFunc(j.EnvironmentIDs, func(e uint64) bool { return e == id })
		return len(j.EnvironmentIDs) != n
	})
}

// RaiseCounterFloor raises environment id's stored proof counter floor to
// floor, never lowering it. The caller waits for it: it is what keeps replay
// protection across a crash.
func (s *Store) RaiseCounterFloor(id, floor uint64) error {
	return s.batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bEnvironments)
		var e Environment
		if err := getJSON(b, u64(id), &e); err != nil {
			return err
		}
		if floor <= e.LastCounter {
			return nil
		}
		e.LastCounter = floor
		return putJSON(b, u64(id), &e)
	})
}

// FlushCheckIns writes last check-in times in one transaction.
func (s *Store) FlushCheckIns(seen map[uint64]int64) error {
	if len(seen) == 0 {
		return nil
	}
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bEnvironments)
		for id, t := range seen {
			var e Environment
			if err := getJSON(b, u64(id), &e); err != nil {
				continue // deleted since
			}
			if t <= e.LastCheckIn {
				continue
			}
			e.LastCheckIn = t
			if err := putJSON(b, u64(id), &e); err != nil {
				return err
			}
		}
		return nil
	})
}

// MarkResync gives every bound environment a Resync nonce from nonce, after
// a restore.
func (s *Store) MarkResync(nonce func() []byte) (int, error) {
	n := 0
	err := s.update(func(tx *bolt.Tx) error {
		return updateAll(tx.Bucket(bEnvironments), func(e *Environment) bool {
			if e.EdgeID == "" {
				return false
			}
			e.Resync = nonce()
			n++
			return true
		})
	})
	return n, err
}
