package store

import (
	"bytes"
	"encoding/json"

	bolt "go.etcd.io/bbolt"
)

var (
	bCommands = []byte("commands")        // env|id -> Command, pending only
	bResults  = []byte("command_results") // env|id -> Command, acked (kept for the API)
)

// createCommands6 makes the command log's buckets.
func createCommands6(tx *bolt.Tx) error {
	for _, b := range [][]byte{bCommands, bResults} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

// ResultsLimit is how many acked commands are kept per environment.
const ResultsLimit = 500

// Command is one entry of an environment's command log.
type Command struct {
	ID       uint64            `json:"id"`
	Env      uint64            `json:"environmentId"`
	Kind     string            `json:"kind"`
	Args     map[string]string `json:"args,omitempty"`
	Created  int64             `json:"created"`
	By       string            `json:"by,omitempty"`
	Status   string            `json:"status"` // pending, ok, failed
	Error    string            `json:"error,omitempty"`
	Finished int64             `json:"finished,omitempty"`
	Acked    int64             `json:"acked,omitempty"`
	// Blob is the hex SHA-256 of the content the command references (a
	// stack's files, a job's script), sent with the command until the
	// device has acked one command carrying it (blobs_sent).
	Blob string `json:"blob,omitempty"`
	// Dup marks a command AckCommands returns that was acked before.
	Dup bool `json:"-"`
}

// AddCommand appends c to environment c.Env's log under a new ID, which it
// sets. IDs increase across the store, so per environment too.
func (s *Store) AddCommand(c *Command) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bCommands)
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		c.ID, c.Status = id, "pending"
		return putJSON(b, key2(c.Env, id), c)
	})
}

// RaiseCommandIDs makes every command ID from now on larger than floor (and
// than every ID given before). The server raises it to its start time at
// every start (server.commandIDFloor), so a store restored from a backup,
// whose sequence went back, never gives out again an ID a device has run.
func (s *Store) RaiseCommandIDs(floor uint64) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bCommands)
		if b.Sequence() >= floor {
			return nil
		}
		return b.SetSequence(floor)
	})
}

// PendingCommands returns up to limit commands of env not yet acked, by ID.
func (s *Store) PendingCommands(env uint64, limit int) ([]Command, error) {
	return s.scanCommands(bCommands, env, limit, false)
}

// CommandResults returns up to limit acked commands of env, newest first.
func (s *Store) CommandResults(env uint64, limit int) ([]Command, error) {
	return s.scanCommands(bResults, env, limit, true)
}

func (s *Store) scanCommands(bucket []byte, env uint64, limit int, newestFirst bool) ([]Command, error) {
	var out []Command
	err := s.db.View(func(tx *bolt.Tx) error {
		prefix := u64(env)
		c := tx.Bucket(bucket).Cursor()
		var k, v []byte
		if newestFirst {
			// The last key of env is just before the first key of env+1.
			if k, _ = c.Seek(u64(env + 1)); k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		} else {
			k, v = c.Seek(prefix)
		}
		for k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit {
			var cmd Command
			if err := json.Unmarshal(v, &cmd); err != nil {
				return err
			}
			out = append(out, cmd)
			if newestFirst {
				k, v = c.Prev()
			} else {
				k, v = c.Next()
			}
		}
		return nil
	})
	return out, err
}

// Ack is one command's outcome as the device reported it.
type Ack struct {
	ID       uint64
	OK       bool
	Error    string
	Finished int64
}

// AckCommands moves acked commands of env from the log to its results, in
// one transaction, and trims the results to ResultsLimit. Acks of commands
// no longer pending (duplicates, or unknown) are ignored. A command acked ok
// that carried a blob marks the blob as held by the device. It returns the
// commands the acks name, as acked; those acked before have Dup set.
func (s *Store) AckCommands(env uint64, acks []Ack, at int64) ([]Command, error) {
	var done []Command
	err := s.batch(func(tx *bolt.Tx) error {
		done = done[:0]
		n := 0
		cb, rb, sent := tx.Bucket(bCommands), tx.Bucket(bResults), tx.Bucket(bBlobsSent)
		for _, a := range acks {
			k := key2(env, a.ID)
			var c Command
			if err := getJSON(cb, k, &c); err != nil {
				// Acked before: given back as a duplicate, so what the ack
				// moves (idempotently) is moved even if a crash came
				// between the first ack and its effects.
				if getJSON(rb, k, &c) == nil {
					c.Dup = true
					done = append(done, c)
				}
				continue
			}
			c.Status, c.Error, c.Finished, c.Acked = "failed", a.Error, a.Finished, at
			if a.OK {
				c.Status = "ok"
			}
			if err := putJSON(rb, k, &c); err != nil {
				return err
			}
			if err := cb.Delete(k); err != nil {
				return err
			}
			if c.Blob != "" && a.OK {
				if err := sent.Put(blobSentKey(env, c.Blob), nil); err != nil {
					return err
				}
			}
			done = append(done, c)
			n++
		}
		if n == 0 {
			return nil
		}
		return trimPrefix(rb, u64(env), ResultsLimit)
	})
	return done, err
}
