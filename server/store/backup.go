package store

import (
	"fmt"
	"io"
	"os"

	bolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the whole store to w, as of one moment,
// while writers carry on; it returns the bytes written. The copy is a bbolt
// file that Open accepts as it is.
//
// Backup holds a read transaction while it writes. Writes go on meanwhile
// while the file fits its initial mapping (initialMmapSize), but one that
// grows it past that waits for every read transaction to end; so w must be
// fast and local (a file on disk), never a network peer: copy to a file,
// then send the file.
//
// The store's generation moves on after the copy, so the copy, put back in
// place, is known for a restore (generation.go).
func (s *Store) Backup(w io.Writer) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	if _, err := s.advanceGeneration(); err != nil {
		return n, fmt.Errorf("backup: generation: %w", err)
	}
	return n, nil
}

// BackupFile writes a copy of the store file at path to w without
// migrating it, as Backup does. A running server's lock forbids opening the
// file: then it fails with ErrLocked.
func BackupFile(path string, w io.Writer) (int64, error) {
	// Read-write, for the generation, but never migrated: the copy is the
	// file as it is; and never created.
	if _, err := os.Stat(path); err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		return 0, openError(path, err)
	}
	s := &Store{db: db, path: path}
	n, err := s.Backup(w)
	if cerr := db.Close(); err == nil && cerr != nil {
		return n, fmt.Errorf("backup: close %s: %w", path, cerr)
	}
	return n, err
}
