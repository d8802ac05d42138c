package server

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"outpost/protocol"
	"outpost/server/store"
	"outpost/snapshot"
)

// bulky is a snapshot whose one container carries a label of n bytes.
func bulky(n int, fill byte) *snapshot.Snapshot {
	d := testSnapshot(1, snapshot.StateRunning)
	d.Containers[0].Labels = map[string]string{"blob": strings.Repeat(string(fill), n)}
	snapshot.Normalize(d)
	return d
}

// A device cannot grow the store without bound: a snapshot (pushed or built
// from a delta) past store.SnapshotBytesLimit is refused with a limit answer
// and stores nothing, and the history is bounded in bytes as well as in
// entries. Before, 30 deltas took the store file from 67 MB to 643 MB.
func TestSnapshotStoreGrowthIsBounded(t *testing.T) {
	s, hs := testServer(t)
	env := stage(t, s, nil)
	dev := newDevice(t, hs.Config.Handler, env, "edge-1")
	if status, _, perr := dev.sync(dev.firstContact()); status != http.StatusOK {
		t.Fatal(perr)
	}
	now := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { return now }
	sync := func(p *protocol.SnapshotPush) (int, *protocol.Error) {
		now = now.Add(time.Minute) // at the device's own frequency
		status, _, perr := dev.sync(&protocol.SyncRequest{Version: protocol.Version, EnvID: env, Include: protocol.IncludeSnapshot, Snapshot: p})
		return status, perr
	}
	// Too big at once.
	huge := bulky(store.SnapshotBytesLimit+1, 'h')
	if status, perr := sync(push(t, 1, 0, huge, huge)); status != http.StatusBadRequest || perr.Code != protocol.CodeLimit || !strings.Contains(perr.Message, "SnapshotBytesLimit") {
		t.Fatalf("a %d-byte full snapshot: %d %+v", store.SnapshotBytesLimit, status, perr)
	}
	if _, err := s.store.Snapshot(env); err == nil {
		t.Fatal("the refused snapshot was stored")
	}
	// Big but allowed, then deltas that each replace its 1.5 MiB label:
	// each is allowed, and the history keeps only what fits its bytes.
	cur := bulky(3<<19, 'a')
	if status, perr := sync(push(t, 1, 0, cur, cur)); status != http.StatusOK {
		t.Fatalf("full snapshot: %d %+v", status, perr)
	}
	for seq := uint64(2); seq <= 31; seq++ {
		next := bulky(3<<19, byte('a'+seq%26))
		d, err := snapshot.Compute(cur, next)
		if err != nil {
			t.Fatal(err)
		}
		if status, perr := sync(push(t, seq, seq-1, d, next)); status != http.StatusOK {
			t.Fatalf("delta %d: %d %+v", seq, status, perr)
		}
		cur = next
	}
	hist, err := s.store.History(env)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, h := range hist {
		total += len(h.Data)
	}
	if total > store.HistoryBytesLimit || len(hist) == 0 || hist[len(hist)-1].Seq != 31 {
		t.Fatalf("history: %d entries, %d bytes (bound %d), last seq %d", len(hist), total, store.HistoryBytesLimit, hist[len(hist)-1].Seq)
	}
	// A delta that would build a snapshot past the bound: refused, the
	// stored one stays.
	over := bulky(store.SnapshotBytesLimit, 'z')
	d, err := snapshot.Compute(cur, over)
	if err != nil {
		t.Fatal(err)
	}
	if status, perr := sync(push(t, 32, 31, d, over)); status != http.StatusBadRequest || perr.Code != protocol.CodeLimit {
		t.Fatalf("a delta building %d bytes: %d %+v", store.SnapshotBytesLimit, status, perr)
	}
	if sn, err := s.store.Snapshot(env); err != nil || sn.Seq != 31 {
		t.Fatalf("stored snapshot after the refused delta: %+v %v", sn, err)
	}
	st, err := os.Stat(s.store.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("store file after 30 deltas of 1.5 MiB: %d MB, history %d entries, %d bytes", st.Size()>>20, len(hist), total)
}
