package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"

	"outpost/internal/atomicfile"
)

// Restores are told apart by a generation the store and a file beside it
// (generationFile) share. Every open and every backup moves both on, the
// store first; a backup copy keeps the generation it was taken at. A store
// whose generation is behind the file's is therefore a backup put back in
// place (Store.Restored). A copy of the data dir with the file itself, or of
// a store file taken by other means, is not told apart: restore with the
// backups outpost-server makes.

// generationFile is the file beside the store that holds its generation.
const generationFile = "outpost.db.generation"

var keyGeneration = []byte("meta/generation")

// readGeneration reads the store's generation (0 before the first).
func readGeneration(tx *bolt.Tx) uint64 {
	if b := tx.Bucket(bSettings); b != nil {
		if v := b.Get(keyGeneration); len(v) == 8 {
			return binary.BigEndian.Uint64(v)
		}
	}
	return 0
}

// fileGeneration reads the generation file beside path; ok is false when
// there is none.
func fileGeneration(path string) (gen uint64, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(filepath.Dir(path), generationFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	} else if err != nil {
		return 0, false, err
	}
	gen, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%s: %w", generationFile, err)
	}
	return gen, true, nil
}

// advanceGeneration moves the store's generation and then the file's to one
// past both, which are at least, and returns whether the store's was behind
// the file's: a restored store.
func (s *Store) advanceGeneration() (restored bool, err error) {
	fileGen, haveFile, err := fileGeneration(s.path)
	if err != nil {
		return false, err
	}
	var next uint64
	err = s.db.Update(func(tx *bolt.Tx) error {
		cur := readGeneration(tx)
		restored = haveFile && cur < fileGen
		next = max(cur, fileGen) + 1
		b, err := tx.CreateBucketIfNotExists(bSettings)
		if err != nil {
			return err
		}
		return b.Put(keyGeneration, binary.BigEndian.AppendUint64(nil, next))
	})
	if err != nil {
		return false, err
	}
	return restored, atomicfile.Write(filepath.Join(filepath.Dir(s.path), generationFile), []byte(strconv.FormatUint(next, 10)+"\n"), 0o600)
}
