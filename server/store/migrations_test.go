package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/bcrypt"

	"outpost/protocol"
)

var update = flag.Bool("update", false, "rewrite the store fixtures in testdata/store from their generators")

// schema1Fixture is a store file written by the schema 1 layout; see
// writeSchema1 and testdata/README.md.
const schema1Fixture = "../../testdata/store/schema1.db"

// What the schema 1 fixture holds. writeSchema1 writes it in the old layout;
// TestSchema1FixtureUpgrades reads it back through today's code.
var (
	fixturePassword = "fixture-password"
	fixtureKey      = bytes.Repeat([]byte{0x5a}, 32)
	fixtureEnv      = Environment{
		ID: 1, Name: "ship-7", Mode: ModeAsync, Created: 1790000000, Trusted: true,
		EdgeID: "edge-ship-7", PublicKey: fixtureKey,
		Frequencies: &protocol.Frequencies{Ping: 300, Snapshot: 3600, Command: 600},
		Agent:       &protocol.AgentInfo{Version: "0.1.0", Hostname: "ship-7", Platform: "docker", OS: "linux", Arch: "arm64"},
		LastCheckIn: 1790000500,
	}
	fixtureEnv2     = Environment{ID: 2, Name: "shop-3", Mode: ModeStandard, Created: 1790000100}
	fixtureGlobal   = protocol.Frequencies{Ping: 60, Snapshot: 300, Command: 60}
	fixtureSnapshot = Snapshot{Seq: 3, Hash: bytes.Repeat([]byte{0xab}, 32), Updated: 1790000400, Kind: "delta", Data: mustCBOR(map[uint64]any{1: "engine 27.3.1", 2: []string{"c1", "c2"}})}
	fixtureHistory  = []HistoryEntry{
		{Seq: 1, Kind: "full", Bytes: 812, At: 1790000200},
		{Seq: 2, Base: 1, Kind: "delta", Bytes: 58, At: 1790000300, Data: mustCBOR(map[uint64]any{1: "delta 1->2"})},
		{Seq: 3, Base: 2, Kind: "delta", Bytes: 61, At: 1790000400, Data: mustCBOR(map[uint64]any{1: "delta 2->3"})},
	}
)

func mustCBOR(v any) []byte {
	b, err := protocol.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// writeSchema1 writes the fixture's data at path in the schema 1 layout,
// with bbolt directly and JSON records. It is frozen with schema 1: a later
// layout gets its own fixture and generator, not a change here.
func writeSchema1(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(fixturePassword), bcrypt.MinCost)
	if err != nil {
		return err
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	be := func(v uint64) []byte { return u64(v) }
	put := func(tx *bolt.Tx, bucket string, k []byte, v any) error {
		raw, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return tx.Bucket([]byte(bucket)).Put(k, raw)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{"settings", "users", "environments", "snapshots", "snapshot_history"} {
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		if err := tx.Bucket([]byte("settings")).Put([]byte("schema"), be(1)); err != nil {
			return err
		}
		recs := []struct {
			bucket string
			key    []byte
			v      any
		}{
			{"settings", []byte("s/frequencies"), map[string]any{"ping": 60, "snapshot": 300, "command": 60}},
			{"users", []byte("n/admin"), map[string]any{"id": 1, "username": "admin", "passwordHash": hash, "role": "administrator"}},
			{"environments", be(1), map[string]any{
				"id": 1, "name": "ship-7", "mode": "async", "created": 1790000000, "trusted": true,
				"edgeId": "edge-ship-7", "publicKey": fixtureKey,
				"frequencies": map[string]any{"ping": 300, "snapshot": 3600, "command": 600},
				"agent":       map[string]any{"version": "0.1.0", "hostname": "ship-7", "platform": "docker", "os": "linux", "arch": "arm64"},
				"lastCheckIn": 1790000500,
			}},
			{"environments", be(2), map[string]any{"id": 2, "name": "shop-3", "mode": "standard", "created": 1790000100, "trusted": false}},
			{"snapshots", be(1), snapshotV1{Seq: fixtureSnapshot.Seq, Hash: fixtureSnapshot.Hash, Updated: fixtureSnapshot.Updated, Kind: fixtureSnapshot.Kind, Data: fixtureSnapshot.Data}},
		}
		for _, h := range fixtureHistory {
			recs = append(recs, struct {
				bucket string
				key    []byte
				v      any
			}{"snapshot_history", key2(1, h.Seq), historyV1{Seq: h.Seq, Base: h.Base, Kind: h.Kind, Bytes: h.Bytes, At: h.At, Data: h.Data}})
		}
		for _, r := range recs {
			if err := put(tx, r.bucket, r.key, r.v); err != nil {
				return err
			}
		}
		// The sequences CreateUser and CreateEnvironment took.
		if err := tx.Bucket([]byte("users")).SetSequence(1); err != nil {
			return err
		}
		return tx.Bucket([]byte("environments")).SetSequence(2)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// rawGet reads one value of a closed store file with bbolt directly.
func rawGet(t *testing.T, path, bucket string, key []byte) []byte {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v []byte
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return errors.New("no bucket " + bucket)
		}
		v = bytes.Clone(b.Get(key))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMigrationsAreOrdered(t *testing.T) {
	for i, m := range migrations {
		if m.version != uint64(i+1) {
			t.Errorf("migration %d (%s) produces version %d, want %d", i, m.name, m.version, i+1)
		}
		if m.name == "" || m.up == nil {
			t.Errorf("migration %d: name and function required", m.version)
		}
	}
	if last := migrations[len(migrations)-1].version; last != SchemaVersion {
		t.Errorf("SchemaVersion %d, last migration produces %d", SchemaVersion, last)
	}
}

func TestSchema1FixtureUpgrades(t *testing.T) {
	if *update {
		if err := os.MkdirAll(filepath.Dir(schema1Fixture), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := writeSchema1(schema1Fixture); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote %s", schema1Fixture)
	}
	path := filepath.Join(t.TempDir(), "outpost.db")
	copyFile(t, schema1Fixture, path)

	// The fixture really is the old layout: schema 1, snapshots as JSON.
	if v := rawGet(t, path, "settings", keySchema); !bytes.Equal(v, u64(1)) {
		t.Fatalf("fixture schema %x, want 1: regenerate it with -update", v)
	}
	oldSnap := rawGet(t, path, "snapshots", u64(1))
	if !json.Valid(oldSnap) {
		t.Fatalf("fixture snapshot is not JSON: %q", oldSnap)
	}

	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.Environment(1)
	if err != nil || !reflect.DeepEqual(*e, fixtureEnv) {
		t.Errorf("environment 1:\n got %+v (%v)\nwant %+v", e, err, fixtureEnv)
	}
	envs, err := s.Environments()
	if err != nil || len(envs) != 2 || !reflect.DeepEqual(envs[1], fixtureEnv2) {
		t.Errorf("environments: %+v (%v)", envs, err)
	}
	u, err := s.UserByName("admin")
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != 1 || u.Role != "administrator" || bcrypt.CompareHashAndPassword(u.PasswordHash, []byte(fixturePassword)) != nil {
		t.Errorf("admin user: %+v, or the password no longer matches", u)
	}
	var global protocol.Frequencies
	if ok, err := s.Setting("frequencies", &global); !ok || err != nil || global != fixtureGlobal {
		t.Errorf("global frequencies %+v (set %v, %v)", global, ok, err)
	}
	sn, err := s.Snapshot(1)
	if err != nil || !reflect.DeepEqual(*sn, fixtureSnapshot) {
		t.Errorf("snapshot:\n got %+v (%v)\nwant %+v", sn, err, fixtureSnapshot)
	}
	h, err := s.History(1)
	if err != nil || !reflect.DeepEqual(h, fixtureHistory) {
		t.Errorf("history:\n got %+v (%v)\nwant %+v", h, err, fixtureHistory)
	}
	// New records follow the sequences of the old ones.
	e3 := &Environment{Name: "new"}
	if err := s.CreateEnvironment(e3); err != nil || e3.ID != 3 {
		t.Errorf("new environment: id %d, %v", e3.ID, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	if v := rawGet(t, path, "settings", keySchema); !bytes.Equal(v, u64(SchemaVersion)) {
		t.Errorf("schema after open %x, want %d", v, SchemaVersion)
	}
	newSnap := rawGet(t, path, "snapshots", u64(1))
	var check Snapshot
	if err := protocol.Unmarshal(newSnap, &check); err != nil {
		t.Errorf("stored snapshot is not CBOR: %v", err)
	}
	if len(newSnap) >= len(oldSnap) {
		t.Errorf("snapshot record %d bytes as CBOR, %d as JSON", len(newSnap), len(oldSnap))
	}

	// Opening again runs nothing twice.
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if sn, err := s.Snapshot(1); err != nil || sn.Seq != fixtureSnapshot.Seq {
		t.Errorf("snapshot after reopening: %+v %v", sn, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// A migration that fails leaves the store as it was: same schema, same
// records.
func TestFailedMigrationChangesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outpost.db")
	copyFile(t, schema1Fixture, path)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("snapshot_history")).Put(key2(9, 1), []byte("{not json"))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	oldSnap := rawGet(t, path, "snapshots", u64(1))

	_, err = Open(path)
	if err == nil || !strings.Contains(err.Error(), "migrate to schema 2") || !strings.Contains(err.Error(), "snapshot_history") {
		t.Fatalf("open with a corrupt history record: %v", err)
	}
	if v := rawGet(t, path, "settings", keySchema); !bytes.Equal(v, u64(1)) {
		t.Errorf("schema after the failed migration %x, want 1", v)
	}
	if v := rawGet(t, path, "snapshots", u64(1)); !bytes.Equal(v, oldSnap) {
		t.Errorf("snapshot record changed by a failed migration:\n%q\n%q", oldSnap, v)
	}
}

func TestNewStoreIsCurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outpost.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if v := rawGet(t, path, "settings", keySchema); !bytes.Equal(v, u64(SchemaVersion)) {
		t.Errorf("new store schema %x, want %d", v, SchemaVersion)
	}
	for _, b := range []string{"settings", "users", "environments", "snapshots", "snapshot_history"} {
		rawGet(t, path, b, []byte("x")) // fails the test if the bucket is missing
	}
}

func TestOpenTwiceFailsFast(t *testing.T) {
	defer func(d time.Duration) { lockTimeout = d }(lockTimeout)
	lockTimeout = 200 * time.Millisecond
	_, path := open(t)
	start := time.Now()
	_, err := Open(path)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
	if want := "another outpost-server is using " + filepath.Dir(path); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second open took %v", d)
	}
	if _, err := BackupFile(path, io.Discard); !errors.Is(err, ErrLocked) {
		t.Errorf("backup of an open store: %v", err)
	}
}
