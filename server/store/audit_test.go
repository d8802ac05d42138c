package store

import (
	"fmt"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestAuditNewestFirstAndBounded(t *testing.T) {
	s, _ := open(t)
	for i := range 5 {
		if err := s.AppendAudit(&AuditEntry{Time: int64(i), Action: fmt.Sprint("a", i)}); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(es []AuditEntry) string {
		var out []uint64
		for _, e := range es {
			out = append(out, e.ID)
		}
		return fmt.Sprint(out)
	}
	for _, c := range []struct {
		before uint64
		limit  int
		want   string
	}{
		{0, 10, "[5 4 3 2 1]"},
		{0, 2, "[5 4]"},
		{4, 2, "[3 2]"},
		{2, 5, "[1]"},
		{1, 5, "[]"},
		{100, 1, "[5]"},
	} {
		got, err := s.Audit(c.before, c.limit)
		if err != nil || ids(got) != c.want {
			t.Errorf("Audit(%d, %d) = %s %v, want %s", c.before, c.limit, ids(got), err, c.want)
		}
	}
}

func TestAuditDropsOldestPastLimit(t *testing.T) {
	s, _ := open(t)
	err := s.update(func(tx *bolt.Tx) error {
		// Pretend AuditLimit entries were appended already: only the
		// sequence and the first keys matter to the trimming.
		b := tx.Bucket(bAudit)
		if err := b.SetSequence(AuditLimit); err != nil {
			return err
		}
		for _, id := range []uint64{1, 2, 3} {
			if err := putJSON(b, u64(id), &AuditEntry{ID: id}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(&AuditEntry{Action: "new"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Audit(0, 10)
	if err != nil || len(got) != 3 || got[0].ID != AuditLimit+1 || got[1].ID != 3 || got[2].ID != 2 {
		t.Fatalf("after one append past the limit: %+v %v", got, err)
	}
}
