package store

import (
	"encoding/json"

	bolt "go.etcd.io/bbolt"
)

var (
	bWaiting  = []byte("waiting_room")  // big-endian entry ID -> WaitingDevice
	bRejected = []byte("rejected_keys") // key fingerprint -> RejectedKey
)

// createWaitingRoom4 makes the waiting room's buckets.
func createWaitingRoom4(tx *bolt.Tx) error {
	for _, b := range [][]byte{bWaiting, bRejected} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

// WaitingDevice is a device that called in with the onboarding key and waits
// for an operator to trust or reject it.
type WaitingDevice struct {
	ID             uint64   `json:"id"`
	EdgeID         string   `json:"edgeId"`
	KeyFingerprint string   `json:"keyFingerprint"`
	PublicKey      []byte   `json:"publicKey"`
	DeviceDH       []byte   `json:"deviceDH"`
	Hostname       string   `json:"hostname,omitempty"`
	AgentVersion   string   `json:"agentVersion,omitempty"`
	Platform       string   `json:"platform,omitempty"`
	OS             string   `json:"os,omitempty"`
	Arch           string   `json:"arch,omitempty"`
	Groups         []string `json:"groups,omitempty"` // asked for with EDGE_GROUPS
	Tags           []string `json:"tags,omitempty"`   // asked for with EDGE_TAGS
	Source         string   `json:"source,omitempty"` // address of its first call
	FirstSeen      int64    `json:"firstSeen"`
	LastSeen       int64    `json:"lastSeen"`       // as flushed; the server holds the live value
	Counter        uint64   `json:"counter"`        // highest proof counter seen
	Mode           string   `json:"mode,omitempty"` // async or standard: the endpoint it calls
}

// RejectedKey remembers a rejected device so it cannot come back.
type RejectedKey struct {
	EdgeID string `json:"edgeId"`
	At     int64  `json:"at"`
	By     string `json:"by"`
}

// AddWaiting stores d under a new ID, which it sets.
func (s *Store) AddWaiting(d *WaitingDevice) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bWaiting)
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		d.ID = id
		return putJSON(b, u64(id), d)
	})
}

// Waiting returns every waiting device, by ID.
func (s *Store) Waiting() ([]WaitingDevice, error) {
	var out []WaitingDevice
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bWaiting).ForEach(func(_, v []byte) error {
			var d WaitingDevice
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			out = append(out, d)
			return nil
		})
	})
	return out, err
}

// TrustWaiting turns waiting device id into a trusted environment made by
// mk, in one transaction: the device leaves the room as the environment is
// created, never both or neither.
func (s *Store) TrustWaiting(id uint64, mk func(*WaitingDevice) *Environment) (*Environment, error) {
	var env *Environment
	err := s.update(func(tx *bolt.Tx) error {
		wb := tx.Bucket(bWaiting)
		var d WaitingDevice
		if err := getJSON(wb, u64(id), &d); err != nil {
			return err
		}
		env = mk(&d)
		eb := tx.Bucket(bEnvironments)
		eid, err := eb.NextSequence()
		if err != nil {
			return err
		}
		env.ID = eid
		if err := putJSON(eb, u64(eid), env); err != nil {
			return err
		}
		return wb.Delete(u64(id))
	})
	return env, err
}

// RejectWaiting removes waiting device id and remembers its key as rejected.
func (s *Store) RejectWaiting(id uint64, rk RejectedKey) (*WaitingDevice, error) {
	var d WaitingDevice
	err := s.update(func(tx *bolt.Tx) error {
		wb := tx.Bucket(bWaiting)
		if err := getJSON(wb, u64(id), &d); err != nil {
			return err
		}
		rk.EdgeID = d.EdgeID
		if err := putJSON(tx.Bucket(bRejected), []byte(d.KeyFingerprint), rk); err != nil {
			return err
		}
		return wb.Delete(u64(id))
	})
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// RejectedKeys returns the fingerprints of rejected devices.
func (s *Store) RejectedKeys() (map[string]RejectedKey, error) {
	out := map[string]RejectedKey{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bRejected).ForEach(func(k, v []byte) error {
			var r RejectedKey
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out[string(k)] = r
			return nil
		})
	})
	return out, err
}

// FlushWaitingSeen writes waiting devices' last-seen times and counters.
func (s *Store) FlushWaitingSeen(seen map[uint64]WaitingSeen) error {
	if len(seen) == 0 {
		return nil
	}
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bWaiting)
		for id, ws := range seen {
			var d WaitingDevice
			if err := getJSON(b, u64(id), &d); err != nil {
				continue // trusted or rejected since
			}
			d.LastSeen, d.Counter = max(d.LastSeen, ws.At), max(d.Counter, ws.Counter)
			if err := putJSON(b, u64(id), &d); err != nil {
				return err
			}
		}
		return nil
	})
}

// WaitingSeen is one waiting device's latest call.
type WaitingSeen struct {
	At      int64
	Counter uint64
}

// ExpireWaiting removes the waiting devices ids that were last seen before
// cutoff (Unix seconds), as stored, and returns those it removed.
func (s *Store) ExpireWaiting(ids []uint64, cutoff int64) ([]uint64, error) {
	var gone []uint64
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bWaiting)
		for _, id := range ids {
			var d WaitingDevice
			if err := getJSON(b, u64(id), &d); err != nil {
				continue // trusted or rejected meanwhile
			}
			if d.LastSeen >= cutoff {
				continue
			}
			if err := b.Delete(u64(id)); err != nil {
				return err
			}
			gone = append(gone, id)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return gone, nil
}
