package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Bucket names.
var (
	bSettings     = []byte("settings")
	bUsers        = []byte("users")
	bEnvironments = []byte("environments")
	bSnapshots    = []byte("snapshots")
	bHistory      = []byte("snapshot_history")
	bTeams        = []byte("teams")
	bAudit        = []byte("audit") // big-endian entry ID -> entry, time order
)

// Errors.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	// ErrNewerSchema: the file was written by a newer Outpost; upgrade the server.
	ErrNewerSchema = errors.New("store was written by a newer Outpost server; run that version or newer")
	// ErrLocked: another process (a running server) has the file open.
	ErrLocked = errors.New("store is locked")
)

// lockTimeout is how long Open waits for another process to let go of the
// file before it gives up with ErrLocked.
var lockTimeout = 2 * time.Second

// Store is the server's bbolt database.
type Store struct {
	db       *bolt.DB
	path     string
	restored bool                // a backup put back in place; generation.go
	observe  func(time.Duration) // write transaction durations; set before use
}

// ObserveWrites makes the store report how long each write transaction
// took. Call it before the store is shared.
func (s *Store) ObserveWrites(fn func(time.Duration)) { s.observe = fn }

// update runs fn in a write transaction and reports its duration.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	start := time.Now()
	err := s.db.Update(fn)
	if s.observe != nil {
		s.observe(time.Since(start))
	}
	return err
}

// batch is update for the writes every device exchange can make (binding,
// counter floors, snapshots, acks): bbolt runs the calls of concurrent callers in
// one transaction, one commit and its fsyncs for all, after at most
// MaxBatchDelay (10 ms). On a disk where a commit costs a few milliseconds
// of fsync, one transaction per exchange capped a fleet's first contacts at
// about 130 a second, and the queue for the writer grew without bound.
//
// fn may run more than once: when another call of the same batch fails,
// the transaction is rolled back and the rest run again. It must start from
// what it reads in tx and keep no state across runs.
//
// A caller alone waits the whole MaxBatchDelay: API handlers and loops
// that write one record after another use update.
func (s *Store) batch(fn func(*bolt.Tx) error) error {
	start := time.Now()
	err := s.db.Batch(fn)
	if s.observe != nil {
		s.observe(time.Since(start))
	}
	return err
}

// Open opens (creating if needed) the store at path and runs the migrations
// it has not had yet. It fails with ErrLocked when another process holds the
// file, and with ErrNewerSchema when a newer server wrote it.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout, InitialMmapSize: initialMmapSize})
	if err != nil {
		return nil, openError(path, err)
	}
	s := &Store{db: db, path: path}
	if err := migrate(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if s.restored, err = s.advanceGeneration(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: generation: %w", path, err)
	}
	return s, nil
}

// Restored reports whether the store was a backup put back in place: its
// generation was behind the one the data dir last saw (generation.go).
func (s *Store) Restored() bool { return s.restored }

// openError words bolt.Open's error; a lock held elsewhere becomes ErrLocked,
// naming the data dir.
func openError(path string, err error) error {
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("open store %s: %w: another outpost-server is using %s; stop it first", path, ErrLocked, filepath.Dir(path))
	}
	return fmt.Errorf("open store %s: %w", path, err)
}

// Close closes the database file.
func (s *Store) Close() error { return s.db.Close() }

// Setting reads the JSON setting name into v; it reports whether it was set.
func (s *Store) Setting(name string, v any) (bool, error) {
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bSettings).Get([]byte("s/" + name))
		if b == nil {
			return nil
		}
		found = true
		return json.Unmarshal(b, v)
	})
	return found, err
}

// PutSetting stores v as the JSON setting name.
func (s *Store) PutSetting(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bSettings).Put([]byte("s/"+name), b)
	})
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func key2(a, b uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, a)
	binary.BigEndian.PutUint64(k[8:], b)
	return k
}

func getJSON(b *bolt.Bucket, k []byte, v any) error {
	raw := b.Get(k)
	if raw == nil {
		return ErrNotFound
	}
	return json.Unmarshal(raw, v)
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, raw)
}

// Path is the store's file.
func (s *Store) Path() string { return s.db.Path() }

// deletePrefix deletes every key of b that starts with prefix.
func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// deleteWhere deletes every key of b that match says to.
func deleteWhere(b *bolt.Bucket, match func(k []byte) bool) error {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if match(k) {
			keys = append(keys, bytes.Clone(k))
		}
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// trimPrefix keeps the last keep keys of b that start with prefix.
func trimPrefix(b *bolt.Bucket, prefix []byte, keep int) error {
	return trimPrefixBytes(b, prefix, keep, 0)
}

// trimPrefixBytes is trimPrefix that also drops the oldest records until the
// values left under prefix hold at most maxBytes (0: no byte bound). The
// newest record is always kept.
func trimPrefixBytes(b *bolt.Bucket, prefix []byte, keep, maxBytes int) error {
	var keys [][]byte
	var sizes []int
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		keys = append(keys, bytes.Clone(k))
		sizes = append(sizes, len(v))
	}
	cut := max(0, len(keys)-keep) // keys[:cut] go
	if maxBytes > 0 {
		total := 0
		for i := len(keys) - 1; i >= cut; i-- {
			total += sizes[i]
			if total > maxBytes && i < len(keys)-1 {
				cut = i + 1
				break
			}
		}
	}
	for _, k := range keys[:cut] {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
