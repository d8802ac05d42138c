package store

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"outpost/protocol"
)

// Bounds on what one environment's snapshots may take in the store.
const (
	// HistoryLimit is how many history entries are kept per environment.
	HistoryLimit = 200
	// HistoryBytesLimit bounds one environment's history in bytes: the
	// oldest entries go first. 500 real containers encode to 26 KB and a
	// one-container delta to under 100 B.
	HistoryBytesLimit = 8 << 20
	// SnapshotBytesLimit bounds one environment's stored snapshot, and one
	// pushed snapshot or delta, as CBOR.
	SnapshotBytesLimit = 4 << 20
)

// Snapshot is the latest snapshot of an environment. It is stored as CBOR
// (schema 2): its data is CBOR already, and JSON would base64 it.
type Snapshot struct {
	Seq     uint64 `cbor:"1,keyasint"`
	Hash    []byte `cbor:"2,keyasint"`
	Updated int64  `cbor:"3,keyasint"`
	Kind    string `cbor:"4,keyasint"` // how it last changed: full or delta
	Data    []byte `cbor:"5,keyasint"` // CBOR of snapshot.Docker
	// SinceFull counts the deltas stored since the last history entry that
	// holds a whole snapshot (HistoryEntry.Full).
	SinceFull int `cbor:"6,keyasint,omitempty"`
}

// HistoryEntry records one snapshot push that changed the stored snapshot.
// The store keeps it as CBOR; the JSON names are the API's.
type HistoryEntry struct {
	Seq   uint64 `json:"seq" cbor:"1,keyasint"`
	Base  uint64 `json:"base,omitempty" cbor:"2,keyasint,omitempty"`
	Kind  string `json:"kind" cbor:"3,keyasint"`  // full or delta
	Bytes int    `json:"bytes" cbor:"4,keyasint"` // size of the pushed data, CBOR
	At    int64  `json:"at" cbor:"5,keyasint"`
	Data  []byte `json:"data,omitempty" cbor:"6,keyasint,omitempty"` // CBOR of the delta; empty for full
	// Full is the whole snapshot after this push, as CBOR: kept for every
	// full push and every KeyframeEvery deltas, so any point of the
	// history can be rebuilt from the nearest one before it.
	Full []byte `json:"-" cbor:"7,keyasint,omitempty"`
	// Hash is the first snapshot.HashSize bytes of the canonical hash of
	// the whole snapshot after this push: a rebuild from the history is
	// checked against it. Empty in entries written before schema 9.
	Hash []byte `json:"-" cbor:"8,keyasint,omitempty"`
}

// KeyframeEvery is how many deltas in a row the history holds at most
// before one entry keeps the whole snapshot again.
const KeyframeEvery = 16

// Snapshot returns the latest snapshot of environment env.
func (s *Store) Snapshot(env uint64) (*Snapshot, error) {
	var sn Snapshot
	err := s.db.View(func(tx *bolt.Tx) error { return getCBOR(tx.Bucket(bSnapshots), u64(env), &sn) })
	if err != nil {
		return nil, err
	}
	return &sn, nil
}

// SnapshotMeta is a stored snapshot without its data.
type SnapshotMeta struct {
	Seq     uint64 `cbor:"1,keyasint"`
	Updated int64  `cbor:"3,keyasint"`
	Kind    string `cbor:"4,keyasint"`
}

// SnapshotMeta returns the sequence number, time and kind of environment
// env's latest snapshot, without decoding its data: what a list shows.
func (s *Store) SnapshotMeta(env uint64) (*SnapshotMeta, error) {
	var m SnapshotMeta
	err := s.db.View(func(tx *bolt.Tx) error { return getCBOR(tx.Bucket(bSnapshots), u64(env), &m) })
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// PutSnapshot replaces environment env's snapshot and appends h to its
// history, dropping the oldest entries past HistoryLimit or HistoryBytesLimit.
//
// The history is kept in push order by sequence number. A push numbered at
// or below entries already there (a device that lost its state and counts
// again, or that reuses the number of a snapshot the server took) ends that
// history: the entries from its number on go, so no delta kept is ever
// replayed onto a snapshot it was not made against.
func (s *Store) PutSnapshot(env uint64, sn *Snapshot, h *HistoryEntry) error {
	return s.batch(func(tx *bolt.Tx) error {
		if err := putCBOR(tx.Bucket(bSnapshots), u64(env), sn); err != nil {
			return err
		}
		hb := tx.Bucket(bHistory)
		c := hb.Cursor()
		prefix := u64(env)
		for k, _ := c.Seek(key2(env, h.Seq)); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(key2(env, h.Seq)) {
			if err := hb.Delete(k); err != nil {
				return err
			}
		}
		if err := putCBOR(hb, key2(env, h.Seq), h); err != nil {
			return err
		}
		return trimPrefixBytes(hb, u64(env), HistoryLimit, HistoryBytesLimit)
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
			if err := protocol.Unmarshal(v, &h); err != nil {
				return fmt.Errorf("history record %x: %w", k, err)
			}
			out = append(out, h)
		}
		return nil
	})
	return out, err
}

func getCBOR(b *bolt.Bucket, k []byte, v any) error {
	raw := b.Get(k)
	if raw == nil {
		return ErrNotFound
	}
	return protocol.Unmarshal(raw, v)
}

func putCBOR(b *bolt.Bucket, k []byte, v any) error {
	raw, err := protocol.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, raw)
}
