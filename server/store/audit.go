package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// AuditLimit is how many audit entries are kept; appending past it drops the
// oldest, so a flood of failed logins cannot grow the file without bound.
const AuditLimit = 100_000

// AuditEntry is one change or security event.
type AuditEntry struct {
	ID     uint64 `json:"id"`
	Time   int64  `json:"time"`   // Unix seconds
	Actor  string `json:"actor"`  // a username, "device <env>", or "anonymous"
	Action string `json:"action"` // e.g. user.create, login.failed
	Target string `json:"target,omitempty"`
	Detail string `json:"detail,omitempty"`
	Remote string `json:"remote,omitempty"` // remote address of the request
}

// AppendAudit stores e under a new ID, which it sets, in its own short write
// transaction.
func (s *Store) AppendAudit(e *AuditEntry) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bAudit)
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		e.ID = id
		if err := putJSON(b, u64(id), e); err != nil {
			return err
		}
		if id <= AuditLimit {
			return nil
		}
		// IDs only grow, so the entries to drop are the first keys.
		c := b.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= id-AuditLimit; k, _ = c.First() {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// Audit returns up to limit entries older than before (all when before is
// 0), newest first.
func (s *Store) Audit(before uint64, limit int) ([]AuditEntry, error) {
	out := []AuditEntry{}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bAudit).Cursor()
		var k, v []byte
		if before == 0 {
			k, v = c.Last()
		} else {
			// Seek lands on before or the next key; step back from it.
			if k, _ = c.Seek(u64(before)); k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		}
		for ; k != nil && len(out) < limit; k, v = c.Prev() {
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("audit entry %x: %w", k, err)
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}
