package edgeagent

import (
	"context"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"outpost/protocol"
	"outpost/snapshot"
)

// A snapshot the server refuses for its size (400 limit, answered before
// commands are released or acks applied) counts as served: the device goes
// on pinging and pulling commands, and tries the snapshot again at its next
// slot. Before, it was an ordinary failure: the device re-uploaded the
// refused snapshot twice a minute for ever and was never served again.
func TestRefusedSnapshotDoesNotStopTheDevice(t *testing.T) {
	for _, standard := range []bool{false, true} {
		t.Run(modeName(standard), func(t *testing.T) { refusedSnapshot(t, standard) })
	}
}

func refusedSnapshot(t *testing.T, standard bool) {
	every := uint32(60)
	if standard {
		every = 5
	}
	start := time.Unix(1_800_000_000, 0)
	clock := &fakeClock{t: start}
	var uploads, served int
	srv := newScriptedServer(t, nil)
	srv.answer = func(req *protocol.SyncRequest) (int, any) {
		if req.Snapshot != nil {
			uploads++
			return http.StatusBadRequest, &protocol.Error{Version: protocol.Version, Code: protocol.CodeLimit,
				Message: "snapshot: 5000000 bytes, limit SnapshotBytesLimit 4194304"}
		}
		served++
		return http.StatusOK, &protocol.SyncAnswer{Version: protocol.Version, EnvID: req.EnvID, Trust: protocol.TrustTrusted,
			Freq: &protocol.Frequencies{Ping: every, Snapshot: 300, Command: every}}
	}
	hs := httptest.NewTLSServer(srv)
	defer hs.Close()
	s := newTestSyncer(t, srv, hs.URL, t.TempDir(), &fakeCollector{d: docker(snapshot.StateRunning)})
	s.standard, s.now, s.wait = standard, clock.now, clock.waitUntil(start.Add(time.Hour), 10_000)
	s.plan = newPlan(clock.now(), mrand.New(mrand.NewPCG(1, 2)))
	if err := s.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("in 1 h: %d refused snapshot uploads, %d exchanges served", uploads, served)
	// One snapshot slot every 5 min: at most ~12 uploads an hour, and the
	// pings and command pulls (one a minute) go on.
	if want := int(time.Hour / (time.Duration(every) * time.Second)); uploads > 15 || served < want*8/10 {
		t.Fatalf("in 1 h: %d uploads of the refused snapshot (want at most one per 5 min slot), %d exchanges served (want about one per interval)", uploads, served)
	}
}
