package store

import (
	"bytes"
	"encoding/json"

	bolt "go.etcd.io/bbolt"
)

// HistoryLimit is how many history entries are kept per environment.
const HistoryLimit = 200

// Snapshot is the latest snapshot of an environment.
type Snapshot struct {
	Seq     uint64 `json:"seq"`
	Hash    []byte `json:"hash"`
	Updated int64  `json:"updated"`
	Kind    string `json:"kind"` // how it last changed: full or delta
	Data    []byte `json:"data"` // CBOR of snapshot.Docker
}

// HistoryEntry records one snapshot push that changed the stored snapshot.
type HistoryEntry struct {
	Seq   uint64 `json:"seq"`
	Base  uint64 `json:"base,omitempty"`
	Kind  string `json:"kind"`  // full or delta
	Bytes int    `json:"bytes"` // size of the pushed data, CBOR
	At    int64  `json:"at"`
	Data  []byte `json:"data,omitempty"` // CBOR of the delta; empty for full
}

// Snapshot returns the latest snapshot of environment env.
func (s *Store) Snapshot(env uint64) (*Snapshot, error) {
	var sn Snapshot
	err := s.db.View(func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bSnapshots), u64(env), &sn) })
	if err != nil {
		return nil, err
	}
	return &sn, nil
}

// PutSnapshot replaces environment env's snapshot and appends h to its
// history, dropping the oldest entries past HistoryLimit.
func (s *Store) PutSnapshot(env uint64, sn *Snapshot, h *HistoryEntry) error {
	return s.update(func(tx *bolt.Tx) error {
		if err := putJSON(tx.Bucket(bSnapshots), u64(env), sn); err != nil {
			return err
		}
		hb := tx.Bucket(bHistory)
		if err := putJSON(hb, key2(env, h.Seq), h); err != nil {
			return err
		}
		prefix := u64(env)
		var keys [][]byte
		c := hb.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, k)
		}
		for _, k := range keys[:max(0, len(keys)-HistoryLimit)] {
			if err := hb.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// History returns environment env's history, oldest first.
func (s *Store) History(env uint64) ([]HistoryEntry, error) {
	var out []HistoryEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		prefix := u64(env)
		c := tx.Bucket(bHistory).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var h HistoryEntry
			if err := json.Unmarshal(v, &h); err != nil {
				return err
			}
			out = append(out, h)
		}
		return nil
	})
	return out, err
}
