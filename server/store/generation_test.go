package store

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// A backup put back in place opens as restored, every time it is put back;
// ordinary reopens, and a fresh store, do not.
func TestRestoredStoreIsToldApart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outpost.db")
	reopen := func() bool {
		t.Helper()
		s, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		r := s.Restored()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if reopen() {
		t.Fatal("a fresh store counts as restored")
	}
	if reopen() {
		t.Fatal("a reopened store counts as restored")
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var live bytes.Buffer
	if _, err := s.Backup(&live); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A backup of the stopped server's file, the other way to make one.
	var stopped bytes.Buffer
	if _, err := BackupFile(path, &stopped); err != nil {
		t.Fatal(err)
	}
	if reopen() {
		t.Fatal("reopened after a backup: counts as restored")
	}
	for name, b := range map[string][]byte{"live backup": live.Bytes(), "stopped backup": stopped.Bytes()} {
		for round := range 2 {
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if !reopen() {
				t.Fatalf("%s put back (round %d): not restored", name, round+1)
			}
			if reopen() {
				t.Fatalf("%s, reopened after its restore: restored again", name)
			}
		}
	}
}
