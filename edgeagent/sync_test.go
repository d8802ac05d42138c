package edgeagent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"outpost/internal/testenv"
	"outpost/protocol"
	"outpost/scheduler"
	"outpost/snapshot"
)

// scriptedServer speaks the real protocol and answers each sync by a script.
type scriptedServer struct {
	mu       sync.Mutex
	requests []protocol.SyncRequest
	answer   func(req *protocol.SyncRequest) (int, any)
}

func (s *scriptedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req protocol.SyncRequest
	if err := protocol.ReadBody(body, r.Header.Get("Content-Encoding"), &req); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.mu.Unlock()
	status, ans := s.answer(&req)
	b, enc, _ := protocol.WriteBody(ans)
	// The headers the real server sends on edge answers (server/edge.go).
	w.Header().Set("Content-Type", protocol.ContentType)
	w.Header()["Date"] = nil
	if enc != "" {
		w.Header().Set("Content-Encoding", enc)
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (s *scriptedServer) last() protocol.SyncRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[len(s.requests)-1]
}

// ackAll stores every push and answers with fixed frequencies.
func ackAll(req *protocol.SyncRequest) (int, any) {
	ans := &protocol.SyncAnswer{Version: protocol.Version, EnvID: req.EnvID, Trust: protocol.TrustTrusted,
		Freq: &protocol.Frequencies{Ping: 5, Snapshot: 10, Command: 5}}
	if req.Snapshot != nil {
		ans.Snapshot = &protocol.SnapshotAck{Stored: req.Snapshot.Seq}
	}
	return http.StatusOK, ans
}

// fakeCollector returns whatever snapshot the test sets.
type fakeCollector struct{ d *snapshot.Docker }

func (f *fakeCollector) Collect(context.Context) (*snapshot.Docker, error) {
	b, _ := protocol.Marshal(f.d)
	var out snapshot.Docker
	_ = protocol.Unmarshal(b, &out)
	return &out, nil
}

func docker(states ...snapshot.State) *snapshot.Docker {
	d := &snapshot.Docker{Engine: snapshot.Engine{Hostname: "dev"}}
	for i, st := range states {
		d.Containers = append(d.Containers, snapshot.Container{ID: string(rune('a'+i)) + "00000000000", Name: "c", State: st})
	}
	snapshot.Normalize(d)
	return d
}

func newTestSyncer(t *testing.T, url, dir string, col Collector, key ed25519.PrivateKey) *syncer {
	t.Helper()
	st, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now
	return &syncer{
		cfg: Config{Key: protocol.EdgeKey{ServerURL: url, EnvironmentID: 7}, DataDir: dir},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), cl: newClient(url, true, nil), col: col,
		key: key, edgeID: "edge-7", st: st, now: now,
		plan: scheduler.NewPlan(scheduler.Defaults, now(), mrand.New(mrand.NewPCG(1, 1))),
	}
}

const all = protocol.IncludePing | protocol.IncludeSnapshot | protocol.IncludeCommands

func TestExchangeFullThenDeltasAcrossRestart(t *testing.T) {
	srv := &scriptedServer{answer: ackAll}
	hs := httptest.NewTLSServer(srv)
	defer hs.Close()
	dir := t.TempDir()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	col := &fakeCollector{d: docker(snapshot.StateRunning, snapshot.StateRunning)}
	s := newTestSyncer(t, hs.URL, dir, col, key)
	ctx := context.Background()

	if err := s.exchange(ctx, all); err != nil {
		t.Fatal(err)
	}
	first := srv.last()
	if first.EdgeID != "edge-7" || first.Proof == nil || len(first.Proof.Key) != ed25519.PublicKeySize || first.Agent == nil {
		t.Fatalf("first contact lacks identity: %+v", first)
	}
	if first.Snapshot == nil || first.Snapshot.IsDelta() || first.Snapshot.Seq != 1 {
		t.Fatalf("first push = %+v, want full seq 1", first.Snapshot)
	}

	// Nothing changed: the exchange carries no snapshot and no identity.
	if err := s.exchange(ctx, all); err != nil {
		t.Fatal(err)
	}
	if r := srv.last(); r.Snapshot != nil || r.Include&protocol.IncludeSnapshot != 0 || r.EdgeID != "" || r.Proof != nil {
		t.Fatalf("idle exchange = %+v", r)
	}

	// One container stops: a delta from seq 1.
	col.d = docker(snapshot.StateRunning, snapshot.StateExited)
	if err := s.exchange(ctx, all); err != nil {
		t.Fatal(err)
	}
	if p := srv.last().Snapshot; p == nil || !p.IsDelta() || p.Base != 1 || p.Seq != 2 {
		t.Fatalf("push after a change = %+v, want delta 1->2", p)
	}

	// A restarted agent resumes from the persisted base with a delta.
	s2 := newTestSyncer(t, hs.URL, dir, col, key)
	col.d = docker(snapshot.StateExited, snapshot.StateExited)
	if err := s2.exchange(ctx, all); err != nil {
		t.Fatal(err)
	}
	if p := srv.last(); p.Snapshot == nil || p.Snapshot.Base != 2 || p.Snapshot.Seq != 3 || p.EdgeID != "" {
		t.Fatalf("push after restart = %+v, want delta 2->3 without identity", p)
	}
	// And the delta applies to what the server would hold.
	var d snapshot.Delta
	if err := protocol.Unmarshal(srv.last().Snapshot.Data, &d); err != nil {
		t.Fatal(err)
	}
	got, err := snapshot.Apply(docker(snapshot.StateRunning, snapshot.StateExited), &d)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := snapshot.Hash(got)
	if string(h[:snapshot.HashSize]) != string(srv.last().Snapshot.Hash) {
		t.Fatal("delta does not rebuild the pushed hash")
	}
}

func TestExchangeSendFullAndLostAck(t *testing.T) {
	var mode string
	srv := &scriptedServer{}
	srv.answer = func(req *protocol.SyncRequest) (int, any) {
		switch mode {
		case "sendfull":
			return http.StatusOK, &protocol.SyncAnswer{Version: 1, Snapshot: &protocol.SnapshotAck{SendFull: true}}
		case "noack":
			return http.StatusOK, &protocol.SyncAnswer{Version: 1}
		case "down":
			return http.StatusBadGateway, &protocol.SyncAnswer{}
		}
		return ackAll(req)
	}
	hs := httptest.NewTLSServer(srv)
	defer hs.Close()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	col := &fakeCollector{d: docker(snapshot.StateRunning)}
	s := newTestSyncer(t, hs.URL, t.TempDir(), col, key)
	ctx := context.Background()
	if err := s.exchange(ctx, all); err != nil {
		t.Fatal(err)
	}

	// The server lost the snapshot: the next push is full.
	col.d = docker(snapshot.StateExited)
	mode = "sendfull"
	if err := s.exchange(ctx, all); err != nil {
		t.Fatal(err)
	}
	at, inc := s.plan.Next()
	if inc&protocol.IncludeSnapshot == 0 || at.After(time.Now().Add(time.Second)) {
		t.Fatalf("after SendFull the next exchange is at %v carrying %v; want a snapshot now", at, inc)
	}
	mode = ""
	if err := s.exchange(ctx, all); err != nil {
		t.Fatal(err)
	}
	if p := srv.last().Snapshot; p == nil || p.IsDelta() {
		t.Fatalf("push after SendFull = %+v, want full", p)
	}

	// A push the server never acknowledged is not used as a base.
	acked := s.st.Acked
	col.d = docker(snapshot.StateDead)
	mode = "noack"
	if err := s.exchange(ctx, all); err != nil {
		t.Fatal(err)
	}
	mode = "down"
	if err := s.exchange(ctx, all); err == nil {
		t.Fatal("a 502 answer did not fail the exchange")
	}
	mode = ""
	if err := s.exchange(ctx, all); err != nil {
		t.Fatal(err)
	}
	if p := srv.last().Snapshot; p == nil || p.Base != acked {
		t.Fatalf("push after an unacknowledged one = %+v, want base %d", p, acked)
	}
}

func TestConfigFromEnvReportsEveryProblem(t *testing.T) {
	env := map[string]string{"EDGE": "0", "EDGE_KEY": "not-a-key!"}
	_, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"EDGE=", "EDGE_ASYNC", "EDGE_KEY"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	good := protocol.EdgeKey{ServerURL: "https://o.example:9443", TunnelAddr: "o.example:8000",
		TunnelFingerprint: "SHA256:" + "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", EnvironmentID: 3}
	env = map[string]string{"EDGE": "1", "EDGE_ASYNC": "1", "EDGE_KEY": good.String(), "EDGE_GROUPS": "a, b,", "OUTPOST_DATA_DIR": t.TempDir()}
	c, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Key != good || len(c.Groups) != 2 || c.Groups[1] != "b" {
		t.Fatalf("config = %+v", c)
	}
}

func TestRunLogsUnsupportedVersion(t *testing.T) {
	srv := &scriptedServer{answer: func(*protocol.SyncRequest) (int, any) {
		return http.StatusBadRequest, &protocol.Error{Version: protocol.Version, Code: protocol.CodeUnsupportedVersion,
			Message: "protocol version 1 is not supported (this side speaks 2 to 3); upgrade the older side"}
	}}
	hs := httptest.NewTLSServer(srv)
	defer hs.Close()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	s := newTestSyncer(t, hs.URL, t.TempDir(), &fakeCollector{d: docker()}, key)
	logs := &testenv.Buffer{}
	s.log = slog.New(slog.NewTextHandler(logs, nil))
	s.plan = scheduler.NewPlan(protocol.Frequencies{Ping: 1, Snapshot: 1, Command: 1}, time.Now(), mrand.New(mrand.NewPCG(2, 2)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		return strings.Contains(logs.String(), "upgrade the agent"), "no upgrade message logged; log:\n" + logs.String()
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "this side speaks 2 to 3") {
		t.Fatalf("log lacks the level or the server's words:\n%s", logs.String())
	}
}
