package server

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"outpost/protocol"
	"outpost/server/store"
	"outpost/snapshot"
)

// bigSnapshot is a full snapshot whose CBOR is past MaxUnprovedBody, as a
// host with a couple of hundred compose containers has.
func bigSnapshot(t *testing.T) *protocol.SnapshotPush {
	t.Helper()
	d := &snapshot.Snapshot{Engine: snapshot.Engine{Hostname: "dev1", ServerVersion: "27.0.1"}}
	for i := range 300 {
		d.Containers = append(d.Containers, snapshot.Container{
			ID: fmt.Sprintf("%064x", i), Name: fmt.Sprintf("svc-%d", i), State: snapshot.StateRunning, Image: "registry.example/app:1.2.3",
			Labels: map[string]string{
				"com.docker.compose.project":      "shop",
				"com.docker.compose.service":      fmt.Sprintf("svc-%d", i),
				"com.docker.compose.config-hash":  fmt.Sprintf("%064x", i*7),
				"com.docker.compose.project.path": "/srv/shop",
			},
		})
	}
	snapshot.Normalize(d)
	p := push(t, 1, 0, d, d)
	if len(p.Data) <= protocol.MaxUnprovedBody {
		t.Fatalf("snapshot of %d bytes, want past %d", len(p.Data), protocol.MaxUnprovedBody)
	}
	return p
}

// TestBigFirstContactRetriedAfterItsAnswerWasLost: a pre-staged device
// whose first contact carries a snapshot past MaxUnprovedBody binds, but
// its answer is lost (link cut, proxy timeout). The device retries as the
// agent does: still signed (no MAC key yet), its body proof the enrollment
// MAC and the signature. The server spent the enrollment key at binding;
// the signature is what lets the retry in. Before, the proof was the MAC
// alone and the device was refused for good.
func TestBigFirstContactRetriedAfterItsAnswerWasLost(t *testing.T) {
	s, hs := testServer(t)
	env := stage(t, s, nil)
	dev := newDevice(t, hs.Config.Handler, env, "edge-big")
	first := dev.firstContact()
	first.Include |= protocol.IncludeSnapshot
	first.Snapshot = bigSnapshot(t)
	status, _, perr := dev.sync(first)
	if status != http.StatusOK {
		t.Fatalf("big first contact: %d %+v", status, perr)
	}
	// The answer never reached the device: it holds no MAC key.
	dev.mac, dev.env = nil, env
	for i := range 3 {
		retry := dev.firstContact()
		retry.Include |= protocol.IncludeSnapshot
		retry.Snapshot = bigSnapshot(t)
		status, _, perr := dev.sync(retry)
		if status != http.StatusOK {
			t.Fatalf("retry %d of the big first contact by the device that bound: %d %+v", i+1, status, perr)
		}
		dev.mac = nil
	}
}

// TestV1AgentIsServedAfterARestore: protocol v1 agents already bound are
// still accepted (MinVersion 1), but a v1 agent does not know SyncRequest
// key 11 and never echoes the resync nonce. Before, after a restore every
// one of its requests was answered with the nonce and nothing else, for
// ever: its commands were never released.
func TestV1AgentIsServedAfterARestore(t *testing.T) {
	s, hs := testServer(t)
	dev := bound(t, s, hs.Config.Handler, "v1-ship")
	if _, err := s.store.MarkResync(func() []byte { return []byte("0123456789abcdef") }); err != nil {
		t.Fatal(err) // what startStore does on a restored store
	}
	c := &store.Command{Env: dev.env, Kind: "container.restart", Args: map[string]string{"id": "c1"}}
	if err := s.store.AddCommand(c); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		s.releases.mu.Lock()
		delete(s.releases.last, dev.env)
		s.releases.mu.Unlock()
		req := dev.ping()
		req.Version = 1 // a v1 agent: no key 11
		req.Include |= protocol.IncludeCommands
		status, ans, perr := dev.sync(req)
		if status != http.StatusOK {
			t.Fatalf("v1 ping %d: %d %+v", i, status, perr)
		}
		if len(ans.Commands) == 1 {
			return
		}
	}
	t.Fatal("a bound v1 agent is never served again after a restore: every answer is a resync it cannot echo")
}

// TestRefusalKindsChosenBySenderAreCapped: a refusal's kind holds what
// the sender chose (the edge ID it claims, the environment its body proof
// names). Before, one address wrote one audit entry per forged request,
// and a flood pushed every failed login out of the refusal log in two
// minutes. Now one network writes at most refusalKindsPerNetwork+1 entries
// of an action a minute, and many networks at most refusalKindsPerAction+1.
func TestRefusalKindsChosenBySenderAreCapped(t *testing.T) {
	s, hs := testServer(t)
	now := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { return now }
	env := stage(t, s, nil)
	dev := newDevice(t, hs.Config.Handler, env, "edge-1")
	if status, _, perr := dev.sync(dev.firstContact()); status != http.StatusOK {
		t.Fatal(perr)
	}
	forge := func(i int, remote string) {
		t.Helper()
		// A forged MAC under an edge ID of the sender's choosing.
		f := newDevice(t, hs.Config.Handler, env, fmt.Sprintf("x%d", i))
		f.mac, f.remote = bytes.Repeat([]byte{7}, 32), remote
		req := f.ping()
		req.EdgeID = f.edgeID
		if status, _, _ := f.sync(req); status != http.StatusForbidden {
			t.Fatalf("forged request: %d", status)
		}
		// A body proof naming an environment that does not exist.
		r := httptest.NewRequest("POST", "/edge/v1/sync", strings.NewReader("\xa0"))
		r.Header.Set("Content-Type", protocol.ContentType)
		r.Header.Set(protocol.BodyProofHeader, protocol.FormatBodyProof(uint64(1_000_000+i), make([]byte, protocol.MACSize)))
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		hs.Config.Handler.ServeHTTP(w, r)
		if w.Code != http.StatusForbidden {
			t.Fatalf("forged body proof: %d", w.Code)
		}
	}
	count := func() map[string]int {
		t.Helper()
		entries, err := s.store.Audit(0, 5000, true)
		if err != nil {
			t.Fatal(err)
		}
		by := map[string]int{}
		for _, e := range entries {
			if e.Refusal {
				by[e.Action]++
			}
		}
		return by
	}
	const n = 100
	for i := range n {
		forge(i, "203.0.113.5:1")
	}
	for action, got := range count() {
		if got > refusalKindsPerNetwork+1 {
			t.Errorf("%d forged requests from one address in one minute wrote %d %s entries, want at most %d", n, got, action, refusalKindsPerNetwork+1)
		}
	}
	// From many networks: one request each.
	s.refused = refusals{}
	for i := range 2 * refusalKindsPerAction {
		forge(n+i, fmt.Sprintf("10.%d.%d.9:1", i/256, i%256))
	}
	for action, got := range count() {
		if got > refusalKindsPerAction+refusalKindsPerNetwork+2 {
			t.Errorf("%d forged requests from as many networks wrote %d %s entries, want at most %d", 2*refusalKindsPerAction, got, action, refusalKindsPerAction+refusalKindsPerNetwork+2)
		}
	}
}

// TestUnprovedBodyIsNotReadPastWhatItCanUse: a request without a body
// proof can inflate to MaxUnprovedBody at most, so a body much larger than
// that as sent is refused whatever it holds. Before, the server read it
// whole (to MaxCompressedBody, 4 MiB), holding the shared in-flight budget
// for it until the body deadline (9 minutes for a 4 MiB Content-Length):
// 64 such connections trickling their last byte held the default 256 MiB.
func TestUnprovedBodyIsNotReadPastWhatItCanUse(t *testing.T) {
	s, hs := testServer(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(hs.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	const sent = 1 << 20
	fmt.Fprintf(conn, "POST /edge/v1/sync HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", protocol.ContentType, protocol.MaxCompressedBody)
	// The server stops reading early, so the write may not complete.
	go func() { _, _ = conn.Write(make([]byte, sent)) }()
	var held, peak int64
	for range 50 {
		time.Sleep(20 * time.Millisecond)
		held, peak = s.inflight.Used()
		if peak >= sent {
			break
		}
	}
	if limit := int64(2 * protocol.MaxUnprovedBody); peak > limit {
		t.Fatalf("an anonymous request without a body proof held up to %d KiB of the in-flight budget (%d KiB now); it can never be accepted past %d KiB", peak>>10, held>>10, protocol.MaxUnprovedBody>>10)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.Contains(status, "413") {
		t.Fatalf("answer %q, %v; want 413", status, err)
	}
}
