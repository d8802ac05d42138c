package store

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// A backup taken while a writer keeps going is one moment of the store:
// each PutSnapshot writes the snapshot and its history entry in one
// transaction, so in the copy the latest snapshot is the last history entry.
func TestBackupIsConsistentWhileWriting(t *testing.T) {
	s, _ := open(t)
	e := &Environment{Name: "busy"}
	if err := s.CreateEnvironment(e); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{0xa5}, 4096) // grows the file as it goes
	var (
		seq     atomic.Uint64
		started = make(chan struct{}) // closed after 20 writes
		stop    = make(chan struct{})
		done    = make(chan error, 1)
	)
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n := seq.Add(1)
			err := s.PutSnapshot(e.ID, &Snapshot{Seq: n, Kind: "full", Data: data}, &HistoryEntry{Seq: n, Kind: "full", Bytes: len(data)})
			if err != nil {
				done <- err
				return
			}
			if n == 20 {
				close(started)
			}
		}
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("writer: %v", err)
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.Backup(f)
	if err := errors.Join(err, f.Close()); err != nil {
		t.Fatal(err)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != n {
		t.Fatalf("backup reported %d bytes, file %v %v", n, fi, err)
	}

	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	sn, err := c.Snapshot(e.ID)
	if err != nil {
		t.Fatal(err)
	}
	h, err := c.History(e.ID)
	if err != nil || len(h) == 0 {
		t.Fatalf("history in the copy: %d entries, %v", len(h), err)
	}
	if last := h[len(h)-1].Seq; sn.Seq != last || !bytes.Equal(sn.Data, data) {
		t.Errorf("copy holds snapshot %d and history up to %d", sn.Seq, last)
	}
	if sn.Seq < 20 {
		t.Errorf("copy holds snapshot %d, taken after the 20th", sn.Seq)
	}
	if got, err := c.Environment(e.ID); err != nil || got.Name != "busy" {
		t.Errorf("environment in the copy: %+v %v", got, err)
	}
}

// BackupFile copies a stopped server's store as it is, without migrating it.
func TestBackupFileDoesNotMigrate(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "outpost.db")
	copyFile(t, schema1Fixture, src)
	var buf bytes.Buffer
	n, err := BackupFile(src, &buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("backup: %d bytes, %v", n, err)
	}
	dst := filepath.Join(dir, "copy.db")
	if err := os.WriteFile(dst, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{src, dst} {
		if v := rawGet(t, p, "settings", keySchema); !bytes.Equal(v, u64(1)) {
			t.Errorf("%s: schema %x, want 1 still", filepath.Base(p), v)
		}
	}
	if _, err := BackupFile(filepath.Join(dir, "missing.db"), io.Discard); err == nil {
		t.Error("backup of a missing store: no error")
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("backup of a missing store created it: %v", err)
	}
}

// gate is a writer whose writes wait until it is opened: a backup into it
// holds its read transaction for as long as the test wants.
type gate struct {
	entered chan struct{} // closed at the first write
	open    chan struct{}
	once    bool
}

func (g *gate) Write(p []byte) (int, error) {
	if !g.once {
		g.once = true
		close(g.entered)
	}
	<-g.open
	return len(p), nil
}

// Writes that grow the file go on while a backup holds its read transaction
// (see initialMmapSize), and the backup does not see them.
func TestWritesGoOnDuringBackup(t *testing.T) {
	if initialMmapSize == 0 {
		t.Skip("no initial mapping on this platform: a growing write waits for the backup")
	}
	s, _ := open(t)
	g := &gate{entered: make(chan struct{}), open: make(chan struct{})}
	backupDone := make(chan error, 1)
	go func() {
		_, err := s.Backup(g)
		backupDone <- err
	}()
	<-g.entered

	data := bytes.Repeat([]byte{0x5a}, 64<<10)
	writesDone := make(chan error, 1)
	go func() {
		for env := uint64(1); env <= 100; env++ { // 6.4 MB: far past the file's first mapping
			if err := s.PutSnapshot(env, &Snapshot{Seq: 1, Data: data}, &HistoryEntry{Seq: 1, Kind: "full"}); err != nil {
				writesDone <- err
				return
			}
		}
		writesDone <- nil
	}()
	select {
	case err := <-writesDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		close(g.open)
		t.Fatal("writes stalled behind the backup's read transaction")
	}
	close(g.open)
	if err := <-backupDone; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshot(100); err != nil {
		t.Fatal(err)
	}
}
