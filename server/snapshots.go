package server

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	"outpost/protocol"
	"outpost/server/store"
	"outpost/snapshot"
)

// envLocks serializes snapshot pushes per environment.
type envLocks struct {
	mu sync.Mutex
	m  map[uint64]*sync.Mutex
}

func (l *envLocks) get(id uint64) *sync.Mutex {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[uint64]*sync.Mutex{}
	}
	m := l.m[id]
	if m == nil {
		m = &sync.Mutex{}
		l.m[id] = m
	}
	return m
}

// ingestSnapshot stores a pushed full snapshot or applies a pushed delta to
// the stored one. A delta that does not fit, or rebuilds to the wrong hash,
// is answered with SendFull rather than an error: the agent recovers by
// sending a full snapshot.
//
// A push, or the snapshot it builds, past store.SnapshotBytesLimit is refused
// with an error matching protocol.ErrLimit, and nothing is stored.
func (s *Server) ingestSnapshot(env uint64, p *protocol.SnapshotPush, now time.Time) (*protocol.SnapshotAck, error) {
	if len(p.Data) > store.SnapshotBytesLimit {
		return nil, snapshotLimit("pushed", len(p.Data))
	}
	mu := s.snapLocks.get(env)
	mu.Lock()
	defer mu.Unlock()
	if p.Seq == 0 && !p.IsDelta() {
		// A snapshot the server took itself (through a tunnel): the next
		// sequence number after the stored one.
		p.Seq = 1
		if cur, err := s.store.Snapshot(env); err == nil {
			p.Seq = cur.Seq + 1
		}
	}

	var (
		next      *snapshot.Snapshot
		kind      = "full"
		sinceFull int // deltas since the last entry keeping a whole snapshot
		hist      = &store.HistoryEntry{Seq: p.Seq, Base: p.Base, Bytes: len(p.Data), At: now.Unix()}
	)
	if p.IsDelta() {
		kind = "delta"
		cur, err := s.store.Snapshot(env)
		if errors.Is(err, store.ErrNotFound) {
			return &protocol.SnapshotAck{SendFull: true}, nil
		} else if err != nil {
			return nil, err
		}
		if cur.Seq != p.Base {
			s.log.Info("snapshot delta base mismatch; asking for a full one", "env", env, "stored", cur.Seq, "base", p.Base)
			return &protocol.SnapshotAck{Stored: cur.Seq, SendFull: true}, nil
		}
		var base snapshot.Snapshot
		var d snapshot.Delta
		if err := protocol.Unmarshal(cur.Data, &base); err != nil {
			return nil, fmt.Errorf("decode stored snapshot: %w", err)
		}
		if err := protocol.Unmarshal(p.Data, &d); err != nil {
			return &protocol.SnapshotAck{Stored: cur.Seq, SendFull: true}, nil
		}
		if next, err = snapshot.Apply(&base, &d); err != nil {
			s.log.Info("snapshot delta does not apply; asking for a full one", "env", env, "err", err)
			return &protocol.SnapshotAck{Stored: cur.Seq, SendFull: true}, nil
		}
		hist.Data = p.Data
		sinceFull = cur.SinceFull + 1
	} else {
		next = &snapshot.Snapshot{}
		if err := protocol.Unmarshal(p.Data, next); err != nil {
			return &protocol.SnapshotAck{SendFull: true}, nil
		}
		snapshot.Normalize(next)
	}
	data, err := protocol.Marshal(next)
	if err != nil {
		return nil, err
	}
	if len(data) > store.SnapshotBytesLimit {
		return nil, snapshotLimit("built", len(data))
	}
	sum := snapshot.HashEncoded(data)
	if len(p.Hash) > 0 && !bytes.HasPrefix(sum[:], p.Hash) {
		s.log.Info("snapshot hash mismatch; asking for a full one", "env", env, "seq", p.Seq, "kind", kind)
		return &protocol.SnapshotAck{SendFull: true}, nil
	}
	hist.Kind, hist.Hash = kind, sum[:snapshot.HashSize]
	if sinceFull == 0 || sinceFull >= store.KeyframeEvery {
		hist.Full, sinceFull = data, 0
	}
	sn := &store.Snapshot{Seq: p.Seq, Hash: sum[:], Updated: now.Unix(), Kind: kind, Data: data, SinceFull: sinceFull}
	if err := s.store.PutSnapshot(env, sn, hist); err != nil {
		return nil, err
	}
	s.metrics.snapshots.WithLabelValues(kind, "stored").Inc()
	return &protocol.SnapshotAck{Stored: p.Seq}, nil
}

// snapshotLimit is the refusal of a snapshot of n bytes, pushed or built.
func snapshotLimit(what string, n int) error {
	return fmt.Errorf("the %s snapshot is %d bytes of CBOR, past the %d a device may keep on this server (500 containers take about 26 KB): %w",
		what, n, store.SnapshotBytesLimit, &protocol.LimitError{Limit: "SnapshotBytesLimit", Max: store.SnapshotBytesLimit})
}
