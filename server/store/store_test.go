package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func open(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outpost.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s, path
}

func TestHistoryKeepsTheLatest(t *testing.T) {
	s, _ := open(t)
	for seq := uint64(1); seq <= HistoryLimit+25; seq++ {
		kind := "delta"
		if seq == 1 {
			kind = "full"
		}
		if err := s.PutSnapshot(3, &Snapshot{Seq: seq, Kind: kind}, &HistoryEntry{Seq: seq, Kind: kind}); err != nil {
			t.Fatal(err)
		}
	}
	// Another environment's history is not touched by the trimming.
	if err := s.PutSnapshot(4, &Snapshot{Seq: 1}, &HistoryEntry{Seq: 1, Kind: "full"}); err != nil {
		t.Fatal(err)
	}
	h, err := s.History(3)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != HistoryLimit || h[0].Seq != 26 || h[len(h)-1].Seq != HistoryLimit+25 {
		t.Fatalf("history: %d entries from %d to %d", len(h), h[0].Seq, h[len(h)-1].Seq)
	}
	if h4, _ := s.History(4); len(h4) != 1 {
		t.Fatalf("environment 4 history: %+v", h4)
	}
	sn, err := s.Snapshot(3)
	if err != nil || sn.Seq != HistoryLimit+25 {
		t.Fatalf("latest snapshot: %+v %v", sn, err)
	}
	if _, err := s.Snapshot(99); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing snapshot: %v", err)
	}
}

// TestHistoryRenumberedEndsTheOldOne: a push numbered at or below the
// history's entries (a device that counts again) drops the entries from
// its number on, so the history stays in push order; other environments
// keep theirs.
func TestHistoryRenumberedEndsTheOldOne(t *testing.T) {
	s, _ := open(t)
	for _, env := range []uint64{3, 4, 5} {
		for seq := uint64(1); seq <= 10; seq++ {
			if err := s.PutSnapshot(env, &Snapshot{Seq: seq}, &HistoryEntry{Seq: seq, Kind: "delta", At: int64(seq)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.PutSnapshot(4, &Snapshot{Seq: 3}, &HistoryEntry{Seq: 3, Kind: "full", At: 100}); err != nil {
		t.Fatal(err)
	}
	h, err := s.History(4)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, e := range h {
		seqs = append(seqs, e.Seq)
	}
	if !slices.Equal(seqs, []uint64{1, 2, 3}) || h[2].Kind != "full" || h[2].At != 100 {
		t.Fatalf("history after a push renumbered to 3: %v, last %+v", seqs, h[len(h)-1])
	}
	for _, env := range []uint64{3, 5} {
		if other, _ := s.History(env); len(other) != 10 {
			t.Fatalf("environment %d's history has %d entries, want its 10", env, len(other))
		}
	}
}

func TestFlushCheckInsOnlyMovesForward(t *testing.T) {
	s, _ := open(t)
	e := &Environment{Name: "a"}
	if err := s.CreateEnvironment(e); err != nil {
		t.Fatal(err)
	}
	if err := s.FlushCheckIns(map[uint64]int64{e.ID: 200, 999: 5}); err != nil {
		t.Fatal(err)
	}
	if err := s.FlushCheckIns(map[uint64]int64{e.ID: 100}); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Environment(e.ID)
	if got.LastCheckIn != 200 {
		t.Fatalf("last check-in %d, want 200", got.LastCheckIn)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outpost.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bSettings)
		if err != nil {
			return err
		}
		return b.Put([]byte("schema"), u64(SchemaVersion+1))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("open newer store: %v", err)
	}
}

func TestUsersAreUnique(t *testing.T) {
	s, _ := open(t)
	if err := s.CreateUser(&User{Username: "admin", Role: "administrator"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(&User{Username: "admin"}); !errors.Is(err, ErrExists) {
		t.Fatalf("second admin: %v", err)
	}
	if n, _ := s.UserCount(); n != 1 {
		t.Fatalf("%d users", n)
	}
}

// TestBatchedUpdatesApplyOnce runs writers that share transactions (batch),
// some of which fail: every one that succeeded is applied once, none that
// failed is applied, and each saw the record as stored.
func TestBatchedUpdatesApplyOnce(t *testing.T) {
	s, _ := open(t)
	e := &Environment{Name: "a"}
	if err := s.CreateEnvironment(e); err != nil {
		t.Fatal(err)
	}
	errRefused := errors.New("refused")
	const writers = 60
	start := make(chan struct{})
	errs := make(chan error, writers)
	for i := range writers {
		go func() {
			<-start
			_, err := s.UpdateEnvironmentShared(e.ID, func(e *Environment) error {
				if slices.Contains(e.TagIDs, uint64(i)) {
					return fmt.Errorf("writer %d: its own change is already in the record it was given", i)
				}
				e.TagIDs = append(e.TagIDs, uint64(i))
				if i%6 == 0 {
					e.Name = "refused"
					return errRefused
				}
				return nil
			})
			if i%6 == 0 && errors.Is(err, errRefused) {
				err = nil
			} else if i%6 == 0 {
				err = fmt.Errorf("writer %d: err %v, want refused", i, err)
			}
			errs <- err
		}()
	}
	close(start)
	for range writers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	got, err := s.Environment(e.ID)
	if err != nil {
		t.Fatal(err)
	}
	var want []uint64
	for i := range writers {
		if i%6 != 0 {
			want = append(want, uint64(i))
		}
	}
	tags := slices.Sorted(slices.Values(got.TagIDs))
	if !slices.Equal(tags, want) || got.Name != "a" {
		t.Fatalf("after the batched writers: name %q, tags %v; want name a, tags %v", got.Name, tags, want)
	}
}
