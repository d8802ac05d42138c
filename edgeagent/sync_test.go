package edgeagent

import (
	"context"
	"crypto/ecdh"
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

	"golang.org/x/crypto/ssh"

	"outpost/internal/testenv"
	"outpost/protocol"
	"outpost/scheduler"
	"outpost/snapshot"
)

// scriptedServer speaks the real protocol, checks device proofs as the real
// server does (signature on first contact, then MAC, counters rising), and
// answers each sync by a script.
type scriptedServer struct {
	mu       sync.Mutex
	requests []protocol.SyncRequest
	answer   func(req *protocol.SyncRequest) (int, any)

	host    ssh.Signer
	dh      *ecdh.PrivateKey
	mac     []byte // once a device has made first contact
	counter uint64
	refused []string // why proofs were refused
	noTag   bool     // answer without a tag, as a forger would
}

func newScriptedServer(t *testing.T, answer func(req *protocol.SyncRequest) (int, any)) *scriptedServer {
	t.Helper()
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	host, err := ssh.NewSignerFromKey(hk)
	if err != nil {
		t.Fatal(err)
	}
	dh, _ := ecdh.X25519().GenerateKey(rand.Reader)
	return &scriptedServer{answer: answer, host: host, dh: dh}
}

func (s *scriptedServer) fingerprint() string { return ssh.FingerprintSHA256(s.host.PublicKey()) }

// check verifies a request's proof; it returns why it fails, or "".
func (s *scriptedServer) check(raw []byte, req *protocol.SyncRequest) string {
	input, p, err := protocol.ProofInput(raw)
	switch {
	case err != nil:
		return err.Error()
	case p == nil || p.Counter <= s.counter:
		return "missing proof or counter not rising"
	case p.Key != nil:
		if !ed25519.Verify(p.Key, input, p.Tag) {
			return "bad signature"
		}
		pub, err := ecdh.X25519().NewPublicKey(p.DH)
		if err != nil {
			return err.Error()
		}
		shared, _ := s.dh.ECDH(pub)
		s.mac, _ = protocol.MACKey(shared, req.EnvID, req.EdgeID)
	case s.mac == nil || !protocol.CheckMAC(s.mac, input, p.Tag):
		return "bad MAC"
	}
	s.counter = p.Counter
	return ""
}

func (s *scriptedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	raw, err := protocol.Inflate(body, r.Header.Get("Content-Encoding"))
	var req protocol.SyncRequest
	if err == nil {
		err = protocol.Unmarshal(raw, &req)
	}
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	why := s.check(raw, &req)
	if why != "" {
		s.refused = append(s.refused, why)
	}
	s.mu.Unlock()
	status, ans := s.answer(&req)
	if why != "" {
		status, ans = http.StatusForbidden, &protocol.Error{Version: protocol.Version, Code: protocol.CodeIdentity, Message: why}
	} else if a, ok := ans.(*protocol.SyncAnswer); ok && status == http.StatusOK {
		if req.Proof.Key != nil && a.Server == nil {
			pub := s.dh.PublicKey().Bytes()
			sig, _ := s.host.Sign(rand.Reader, protocol.ServerKeyMessage(pub))
			a.Server = &protocol.ServerKey{DH: pub, HostKey: s.host.PublicKey().Marshal(), Sig: ssh.Marshal(sig)}
		}
		if !s.noTag {
			s.mu.Lock()
			_ = protocol.SealAnswer(a, s.mac, req.Proof.Counter)
			s.mu.Unlock()
		}
	}
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
type fakeCollector struct{ d *snapshot.Snapshot }

func (f *fakeCollector) Collect(context.Context) (*snapshot.Snapshot, error) {
	b, _ := protocol.Marshal(f.d)
	var out snapshot.Snapshot
	_ = protocol.Unmarshal(b, &out)
	return &out, nil
}

func docker(states ...snapshot.State) *snapshot.Snapshot {
	d := &snapshot.Snapshot{Engine: snapshot.Engine{Hostname: "dev"}}
	for i, st := range states {
		d.Containers = append(d.Containers, snapshot.Container{ID: string(rune('a'+i)) + "00000000000", Name: "c", State: st})
	}
	snapshot.Normalize(d)
	return d
}

// newTestSyncer is an agent on dir (keys and state kept there, as Run does)
// talking to srv.
func newTestSyncer(t *testing.T, srv *scriptedServer, url, dir string, col Collector) *syncer {
	t.Helper()
	return newTestSyncerFor(t, srv, url, dir, col, 7)
}

// newTestSyncerFor is newTestSyncer with the edge key's environment ID env
// (0: the onboarding key).
func newTestSyncerFor(t *testing.T, srv *scriptedServer, url, dir string, col Collector, env uint64) *syncer {
	t.Helper()
	key, err := loadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	dh, err := loadOrCreateDH(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Key: protocol.EdgeKey{ServerURL: url, TunnelFingerprint: srv.fingerprint(), EnvironmentID: env}, DataDir: dir}
	id, err := newIdentity(cfg, key, dh, "edge-7", st)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now
	cmds, err := loadJournal(dir, now())
	if err != nil {
		t.Fatal(err)
	}
	return &syncer{
		cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil)), cl: newClient(url, true, nil, nil), col: col,
		id: id, st: st, now: now, cmds: cmds, exec: &fakeExecutor{},
		plan: scheduler.NewPlan(scheduler.Defaults, now(), mrand.New(mrand.NewPCG(1, 1))),
	}
}

// agentAgainst is an agent on a fresh data dir, with an empty engine, talking
// to a scripted server that answers with answer.
func agentAgainst(t *testing.T, answer func(req *protocol.SyncRequest) (int, any)) (*syncer, *scriptedServer) {
	t.Helper()
	srv := newScriptedServer(t, answer)
	hs := httptest.NewTLSServer(srv)
	t.Cleanup(hs.Close)
	return newTestSyncer(t, srv, hs.URL, t.TempDir(), &fakeCollector{d: docker()}), srv
}

const all = protocol.IncludePing | protocol.IncludeSnapshot | protocol.IncludeCommands

func TestExchangeFullThenDeltasAcrossRestart(t *testing.T) {
	srv := newScriptedServer(t, ackAll)
	hs := httptest.NewTLSServer(srv)
	defer hs.Close()
	dir := t.TempDir()
	col := &fakeCollector{d: docker(snapshot.StateRunning, snapshot.StateRunning)}
	s := newTestSyncer(t, srv, hs.URL, dir, col)
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
	if r := srv.last(); r.Snapshot != nil || r.Include&protocol.IncludeSnapshot != 0 || r.EdgeID != "" || r.Proof == nil || r.Proof.Key != nil || len(r.Proof.Tag) != protocol.MACSize {
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
	s2 := newTestSyncer(t, srv, hs.URL, dir, col)
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
	// Every proof held, across the restart too: counters kept rising.
	if len(srv.refused) != 0 {
		t.Fatalf("proofs refused: %v", srv.refused)
	}
}

func TestExchangeSendFullAndLostAck(t *testing.T) {
	var mode string
	srv := newScriptedServer(t, nil)
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
	col := &fakeCollector{d: docker(snapshot.StateRunning)}
	s := newTestSyncer(t, srv, hs.URL, t.TempDir(), col)
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
	env := map[string]string{"EDGE": "0", "EDGE_KEY": "not-a-key!", "EDGE_ASYNC": "yes", "EDGE_INACTIVITY_TIMEOUT": "soon", "EDGE_HOST_ROOT": "/no/such/dir"}
	_, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"EDGE=", "EDGE_ASYNC", "EDGE_KEY", "EDGE_INACTIVITY_TIMEOUT", "EDGE_HOST_ROOT"} {
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
	srv := newScriptedServer(t, func(*protocol.SyncRequest) (int, any) {
		return http.StatusBadRequest, &protocol.Error{Version: protocol.Version, Code: protocol.CodeUnsupportedVersion,
			Message: "protocol version 1 is not supported (this side speaks 2 to 3); upgrade the older side"}
	})
	hs := httptest.NewTLSServer(srv)
	defer hs.Close()
	s := newTestSyncer(t, srv, hs.URL, t.TempDir(), &fakeCollector{d: docker()})
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

func TestIdentityRefusesAServerWithAnotherHostKey(t *testing.T) {
	s, _ := agentAgainst(t, ackAll)
	s.id.Pin = "SHA256:" + strings.Repeat("A", 43) // the edge key was made for another server
	err := s.exchange(context.Background(), all)
	if err == nil || !strings.Contains(err.Error(), "edge key pins") {
		t.Fatalf("exchange with a server whose host key is not pinned: %v", err)
	}
	if s.id.MAC != nil || s.st.Bound {
		t.Fatal("the agent took the key of a server it cannot vouch for")
	}
}

func TestIdentityFallsBackToSignedContact(t *testing.T) {
	s, srv := agentAgainst(t, ackAll)
	ctx := context.Background()
	for range 2 {
		if err := s.exchange(ctx, protocol.IncludePing); err != nil {
			t.Fatal(err)
		}
	}
	if r := srv.last(); r.Proof.Key != nil || len(srv.refused) != 0 {
		t.Fatalf("second exchange not MACed, or refusals %v", srv.refused)
	}
	// The server lost what it derived (a restored data dir, a new key).
	srv.mu.Lock()
	srv.mac = nil
	srv.mu.Unlock()
	if err := s.exchange(ctx, protocol.IncludePing); err == nil {
		t.Fatal("a MAC the server cannot check was accepted")
	}
	if err := s.exchange(ctx, protocol.IncludePing); err != nil {
		t.Fatalf("the agent did not recover with a signed contact: %v", err)
	}
	if r := srv.last(); r.Proof.Key == nil {
		t.Fatal("recovery exchange was not signed")
	}
	if err := s.exchange(ctx, protocol.IncludePing); err != nil || srv.last().Proof.Key != nil {
		t.Fatalf("after recovery the agent should MAC again: %v", err)
	}
}

func TestIdentitySkipsAheadOfTheServersFloor(t *testing.T) {
	s, srv := agentAgainst(t, ackAll)
	ctx := context.Background()
	for range 2 {
		if err := s.exchange(ctx, protocol.IncludePing); err != nil {
			t.Fatal(err)
		}
	}
	// The server restarted from its stored floor, above our next counter.
	srv.mu.Lock()
	srv.counter += 700
	srv.mu.Unlock()
	if err := s.exchange(ctx, protocol.IncludePing); err == nil {
		t.Fatal("a counter under the server's floor was accepted")
	}
	if err := s.exchange(ctx, protocol.IncludePing); err != nil {
		t.Fatalf("the agent did not skip ahead: %v", err)
	}
	if err := s.exchange(ctx, protocol.IncludePing); err != nil || srv.last().Proof.Key != nil {
		t.Fatalf("after skipping ahead the agent should MAC again: %v", err)
	}
}

// TestForgedAnswersAreNotActedOn: an answer without a valid tag (what a
// man in the middle without the server's keys can send) changes nothing and
// runs nothing, even when it is a 200 full of commands.
func TestForgedAnswersAreNotActedOn(t *testing.T) {
	s, srv := agentAgainst(t, ackAll)
	exec := s.exec.(*fakeExecutor)
	ctx := context.Background()
	if err := s.exchange(ctx, protocol.IncludePing); err != nil {
		t.Fatal(err)
	}
	env := s.id.Env
	srv.answer = func(req *protocol.SyncRequest) (int, any) {
		return http.StatusOK, &protocol.SyncAnswer{Version: protocol.Version, EnvID: 99, Trust: protocol.TrustTrusted,
			Commands: []protocol.Command{{ID: 1, Kind: "volume.remove", Args: map[string]string{"name": "db-data", "force": "true"}}}}
	}
	srv.noTag = true
	if err := s.exchange(ctx, all); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("an untagged answer was taken: %v", err)
	}
	if len(exec.ran) != 0 || s.id.Env != env {
		t.Fatalf("a forged answer ran %v or moved the agent to environment %d", exec.ran, s.id.Env)
	}
	// Tagged by the real key, the same commands run.
	srv.noTag = false
	if err := s.exchange(ctx, all); err != nil {
		t.Fatal(err)
	}
	if len(exec.ran) != 1 {
		t.Fatalf("a genuine answer's command did not run: %v", exec.ran)
	}
}
