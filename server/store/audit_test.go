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
		got, err := s.Audit(c.before, c.limit, true)
		if err != nil || ids(got) != c.want {
			t.Errorf("Audit(%d, %d) = %s %v, want %s", c.before, c.limit, ids(got), err, c.want)
		}
	}
}

func TestAuditDropsOldestPastLimit(t *testing.T) {
	s, _ := open(t)
	err := s.update(func(tx *bolt.Tx) error {
		// Pretend AuditLimit entries were appended already: only the
		// counter and the first keys matter to the trimming.
		b := tx.Bucket(bAudit)
		if err := b.SetSequence(AuditLimit); err != nil {
			return err
		}
		for _, id := range []uint64{1, 2, 3} {
			if err := putJSON(b, u64(id), &AuditEntry{ID: id}); err != nil {
				return err
			}
		}
		return tx.Bucket(bSettings).Put(keyAuditCount, u64(AuditLimit))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(&AuditEntry{Action: "new"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Audit(0, 10, true)
	if err != nil || len(got) != 3 || got[0].ID != AuditLimit+1 || got[1].ID != 3 || got[2].ID != 2 {
		t.Fatalf("after one append past the limit: %+v %v", got, err)
	}
}

// Refusals have their own cap: a flood of them never drops an entry of
// changes and decisions, and the two kinds page together newest first.
func TestAuditRefusalsKeptApart(t *testing.T) {
	s, _ := open(t)
	if err := s.AppendAudit(&AuditEntry{Action: "login"}); err != nil {
		t.Fatal(err)
	}
	for i := range RefusalLimit + 50 {
		if err := s.AppendAudit(&AuditEntry{Action: "login.failed", Refusal: true, Count: i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AppendAudit(&AuditEntry{Action: "user.create"}); err != nil {
		t.Fatal(err)
	}
	all, err := s.Audit(0, RefusalLimit+100, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != RefusalLimit+2 || all[0].Action != "user.create" || all[len(all)-1].Action != "login" || all[len(all)-2].Count != 50 {
		t.Fatalf("%d entries, newest %q, oldest %q", len(all), all[0].Action, all[len(all)-1].Action)
	}
	for i := 1; i < len(all); i++ {
		if all[i].ID >= all[i-1].ID {
			t.Fatalf("not newest first at %d: %d after %d", i, all[i].ID, all[i-1].ID)
		}
	}
	// Paging across both kinds, and without refusals.
	page, err := s.Audit(all[0].ID, 2, true)
	if err != nil || len(page) != 2 || page[0].ID != all[1].ID || page[1].ID != all[2].ID {
		t.Fatalf("second page: %+v %v", page, err)
	}
	changes, err := s.Audit(0, 10, false)
	if err != nil || len(changes) != 2 || changes[0].Action != "user.create" || changes[1].Action != "login" {
		t.Fatalf("without refusals: %+v %v", changes, err)
	}
}
