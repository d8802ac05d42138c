package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"outpost/protocol"
)

// SchemaVersion is the layout this build reads and writes: the version the
// last migration produces.
const SchemaVersion = 10

// keySchema is the settings key holding the schema version, big-endian.
var keySchema = []byte("schema")

// migration turns a store of schema version-1 into one of schema version.
type migration struct {
	version uint64
	name    string
	up      func(tx *bolt.Tx) error
}

// migrations, in order. Open runs each one the store has not had yet, each in
// its own write transaction together with the bump of the stored version, so
// a crash between two leaves a store of the earlier version, not a mix.
//
// A migration is frozen once released: it describes the layout as it was
// then, so it must not call today's encoders or use today's bucket lists.
// A new layout is a new migration at the end, and SchemaVersion follows it.
var migrations = []migration{
	{1, "create the settings, users, environments, snapshots and snapshot_history buckets", createBuckets1},
	{2, "snapshot and history records as CBOR instead of JSON with base64 data", snapshotsCBOR2},
	{3, "create the teams and audit buckets", createTeamsAudit3},
	{4, "create the waiting_room and rejected_keys buckets", createWaitingRoom4},
	{5, "create the tags, environment_groups and edge_groups buckets", createGroups5},
	{6, "create the commands and command_results buckets", createCommands6},
	{7, "create the buckets of edge stacks, edge jobs and their content", createEdgeWork7},
	{8, "create the audit_refusals bucket and count the audit entries", createRefusals8},
	{9, "create the usage bucket", createUsage9},
	{10, "create the kube_access bucket", createKube10},
}

// migrate brings the store up to SchemaVersion, refusing a newer one.
func migrate(db *bolt.DB) error {
	var cur uint64
	err := db.View(func(tx *bolt.Tx) error {
		var err error
		cur, err = storedVersion(tx)
		return err
	})
	if err != nil {
		return err
	}
	if cur > SchemaVersion {
		return fmt.Errorf("schema %d, this build reads up to %d: %w", cur, SchemaVersion, ErrNewerSchema)
	}
	for _, m := range migrations {
		if m.version <= cur {
			continue
		}
		err := db.Update(func(tx *bolt.Tx) error {
			if err := m.up(tx); err != nil {
				return err
			}
			return tx.Bucket(bSettings).Put(keySchema, u64(m.version))
		})
		if err != nil {
			return fmt.Errorf("migrate to schema %d (%s): %w", m.version, m.name, err)
		}
	}
	return nil
}

// storedVersion is the schema version recorded in tx's store; 0 for a new file.
func storedVersion(tx *bolt.Tx) (uint64, error) {
	st := tx.Bucket(bSettings)
	if st == nil {
		return 0, nil
	}
	v := st.Get(keySchema)
	switch {
	case v == nil:
		return 0, nil
	case len(v) != 8:
		return 0, fmt.Errorf("schema version: %d bytes, want 8", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// createBuckets1 is the first layout: the buckets every later one builds on.
func createBuckets1(tx *bolt.Tx) error {
	for _, name := range []string{"settings", "users", "environments", "snapshots", "snapshot_history"} {
		if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
			return fmt.Errorf("bucket %s: %w", name, err)
		}
	}
	return nil
}

// snapshotV1 and historyV1 are the schema 1 records: JSON, their CBOR data
// base64-inflated by encoding/json.
type snapshotV1 struct {
	Seq     uint64 `json:"seq"`
	Hash    []byte `json:"hash"`
	Updated int64  `json:"updated"`
	Kind    string `json:"kind"`
	Data    []byte `json:"data"`
}

type historyV1 struct {
	Seq   uint64 `json:"seq"`
	Base  uint64 `json:"base,omitempty"`
	Kind  string `json:"kind"`
	Bytes int    `json:"bytes"`
	At    int64  `json:"at"`
	Data  []byte `json:"data,omitempty"`
}

// snapshotsCBOR2 rewrites the snapshots and snapshot_history records from
// JSON to CBOR, saving the third that base64 adds to their data. The field
// numbers are those of Snapshot and HistoryEntry as of schema 2.
func snapshotsCBOR2(tx *bolt.Tx) error {
	type snapshotV2 struct {
		Seq     uint64 `cbor:"1,keyasint"`
		Hash    []byte `cbor:"2,keyasint"`
		Updated int64  `cbor:"3,keyasint"`
		Kind    string `cbor:"4,keyasint"`
		Data    []byte `cbor:"5,keyasint"`
	}
	type historyV2 struct {
		Seq   uint64 `cbor:"1,keyasint"`
		Base  uint64 `cbor:"2,keyasint,omitempty"`
		Kind  string `cbor:"3,keyasint"`
		Bytes int    `cbor:"4,keyasint"`
		At    int64  `cbor:"5,keyasint"`
		Data  []byte `cbor:"6,keyasint,omitempty"`
	}
	err := rewrite(tx.Bucket([]byte("snapshots")), func(v []byte) (any, error) {
		var o snapshotV1
		if err := json.Unmarshal(v, &o); err != nil {
			return nil, err
		}
		return snapshotV2(o), nil
	})
	if err != nil {
		return fmt.Errorf("snapshots: %w", err)
	}
	err = rewrite(tx.Bucket([]byte("snapshot_history")), func(v []byte) (any, error) {
		var o historyV1
		if err := json.Unmarshal(v, &o); err != nil {
			return nil, err
		}
		return historyV2(o), nil
	})
	if err != nil {
		return fmt.Errorf("snapshot_history: %w", err)
	}
	return nil
}

// rewrite replaces every value of b by the CBOR of conv(value). It holds one
// record at a time, and seeks back to the key after each Put because a
// bbolt cursor is not valid across a change to its bucket.
func rewrite(b *bolt.Bucket, conv func(v []byte) (any, error)) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		key := bytes.Clone(k)
		rec, err := conv(v)
		if err != nil {
			return fmt.Errorf("key %x: %w", key, err)
		}
		out, err := protocol.Marshal(rec)
		if err != nil {
			return fmt.Errorf("key %x: %w", key, err)
		}
		if err := b.Put(key, out); err != nil {
			return fmt.Errorf("key %x: %w", key, err)
		}
		if k, _ = c.Seek(key); !bytes.Equal(k, key) {
			return fmt.Errorf("key %x: lost after rewriting it", key)
		}
	}
	return nil
}
