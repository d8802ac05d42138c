package store

import (
	"bytes"
	"encoding/binary"

	bolt "go.etcd.io/bbolt"

	"outpost/protocol"
	"outpost/usage"
)

// bUsage holds each device's bytes per day: key day (8 bytes) then
// environment (8 bytes), so the oldest days trim from the front and one
// day of the whole fleet is one range.
var bUsage = []byte("usage")

func createUsage9(tx *bolt.Tx) error {
	_, err := tx.CreateBucketIfNotExists(bUsage)
	return err
}

// AddUsage adds counts to the stored ones, in one transaction, and drops the
// days older than usage.Days before the newest of them.
func (s *Store) AddUsage(d map[usage.Key]usage.Day) error {
	if len(d) == 0 {
		return nil
	}
	var newest int64
	for k := range d {
		newest = max(newest, k.Day)
	}
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bUsage)
		for k, v := range d {
			key := key2(uint64(k.Day), k.Env)
			var cur usage.Day
			if err := getCBOR(b, key, &cur); err != nil && err != ErrNotFound {
				return err
			}
			if err := putCBOR(b, key, cur.Add(v)); err != nil {
				return err
			}
		}
		cutoff := u64(uint64(max(newest-usage.Days, 0)))
		c := b.Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k[:8], cutoff) < 0; k, _ = c.First() {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// Usage returns environment env's stored counts of the days from through
// to, by day; days without exchanges are left out.
func (s *Store) Usage(env uint64, from, to int64) (map[int64]usage.Day, error) {
	out := map[int64]usage.Day{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bUsage)
		for day := from; day <= to; day++ {
			var d usage.Day
			if err := getCBOR(b, key2(uint64(day), env), &d); err == nil {
				out[day] = d
			} else if err != ErrNotFound {
				return err
			}
		}
		return nil
	})
	return out, err
}

// UsageSince sums every environment's stored counts from day from on.
func (s *Store) UsageSince(from int64) (map[uint64]usage.Day, error) {
	out := map[uint64]usage.Day{}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bUsage).Cursor()
		for k, v := c.Seek(u64(uint64(from))); k != nil; k, v = c.Next() {
			var d usage.Day
			if err := protocol.Unmarshal(v, &d); err != nil {
				return err
			}
			env := binary.BigEndian.Uint64(k[8:])
			out[env] = out[env].Add(d)
		}
		return nil
	})
	return out, err
}
