package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Audit retention. Refusals (failed logins, refused device identities, bad
// setup posts: anyone can cause them) are kept apart from the rest, each
// kind with its own cap, so a flood of them cannot push the record of
// logins, changes and trust decisions out.
const (
	// AuditLimit is how many entries of changes and security decisions are kept.
	AuditLimit = 100_000
	// RefusalLimit is how many refusal entries are kept.
	RefusalLimit = 20_000
)

var bRefusals = []byte("audit_refusals") // big-endian entry ID -> entry; IDs from the audit bucket's sequence

// Counters of the entries each audit bucket holds, in the settings bucket.
var (
	keyAuditCount   = []byte("audit/count")
	keyRefusalCount = []byte("audit_refusals/count")
)

// createRefusals8 makes the refusals bucket and counts the audit entries a
// store already holds, so trimming can go by count.
func createRefusals8(tx *bolt.Tx) error {
	if _, err := tx.CreateBucketIfNotExists(bRefusals); err != nil {
		return err
	}
	n := tx.Bucket([]byte("audit")).Stats().KeyN
	st := tx.Bucket([]byte("settings"))
	if err := st.Put(keyAuditCount, u64(uint64(n))); err != nil {
		return err
	}
	return st.Put(keyRefusalCount, u64(0))
}

// AuditEntry is one change or security event.
type AuditEntry struct {
	ID     uint64 `json:"id"`
	Time   int64  `json:"time"`   // Unix seconds
	Actor  string `json:"actor"`  // a username, "device <env>", or "anonymous"
	Action string `json:"action"` // e.g. user.create, login.failed
	Target string `json:"target,omitempty"`
	Detail string `json:"detail,omitempty"`
	Remote string `json:"remote,omitempty"` // remote address of the request
	// Count, on a refusal, is how many times it happened from Time to
	// Until: one entry stands for a minute of the same refusals.
	Count int   `json:"count,omitempty"`
	Until int64 `json:"until,omitempty"`
	// Refusal marks an entry kept under RefusalLimit.
	Refusal bool `json:"refusal,omitempty"`
}

// AppendAudit stores e under a new ID, which it sets, in its own short write
// transaction: with the refusals when e.Refusal is set, else with the
// changes and decisions. The oldest entry of its kind goes past its limit.
func (s *Store) AppendAudit(e *AuditEntry) error {
	return s.update(func(tx *bolt.Tx) error {
		id, err := tx.Bucket(bAudit).NextSequence()
		if err != nil {
			return err
		}
		e.ID = id
		b, counter, limit := tx.Bucket(bAudit), keyAuditCount, AuditLimit
		if e.Refusal {
			b, counter, limit = tx.Bucket(bRefusals), keyRefusalCount, RefusalLimit
		}
		if err := putJSON(b, u64(id), e); err != nil {
			return err
		}
		st := tx.Bucket(bSettings)
		var n uint64
		if v := st.Get(counter); len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		n++
		// IDs only grow, so the entries to drop are the first keys.
		c := b.Cursor()
		for k, _ := c.First(); k != nil && n > uint64(limit); k, _ = c.First() {
			if err := b.Delete(k); err != nil {
				return err
			}
			n--
		}
		return st.Put(counter, u64(n))
	})
}

// Audit returns up to limit entries older than before (all when before is
// 0), newest first, refusals among them unless withRefusals is false.
func (s *Store) Audit(before uint64, limit int, withRefusals bool) ([]AuditEntry, error) {
	out := []AuditEntry{}
	err := s.db.View(func(tx *bolt.Tx) error {
		a := newestBelow(tx.Bucket(bAudit).Cursor(), before)
		var r auditCursor
		if withRefusals {
			r = newestBelow(tx.Bucket(bRefusals).Cursor(), before)
		}
		// Both buckets share one ID sequence: merge them newest first.
		for len(out) < limit && (a.k != nil || r.k != nil) {
			next := &a
			if a.k == nil || (r.k != nil && binary.BigEndian.Uint64(r.k) > binary.BigEndian.Uint64(a.k)) {
				next = &r
			}
			var e AuditEntry
			if err := json.Unmarshal(next.v, &e); err != nil {
				return fmt.Errorf("audit entry %x: %w", next.k, err)
			}
			out = append(out, e)
			next.k, next.v = next.c.Prev()
		}
		return nil
	})
	return out, err
}

// auditCursor walks one audit bucket backwards.
type auditCursor struct {
	c    *bolt.Cursor
	k, v []byte
}

// newestBelow places a cursor on the newest entry older than before (the
// newest of all when before is 0).
func newestBelow(c *bolt.Cursor, before uint64) auditCursor {
	a := auditCursor{c: c}
	if before == 0 {
		a.k, a.v = c.Last()
		return a
	}
	// Seek lands on before or the next key; step back from it.
	if k, _ := c.Seek(u64(before)); k == nil {
		a.k, a.v = c.Last()
	} else {
		a.k, a.v = c.Prev()
	}
	return a
}
