package server

import (
	"bytes"
	"cmp"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"outpost/protocol"
	"outpost/server/store"
	"outpost/snapshot"
	"outpost/throttle"
	"outpost/waitingroom"
)

// testServer is a Server on a temp store, served over plain HTTP by httptest:
// the handlers are what is under test, not TLS.
func testServer(t testing.TB) (*Server, *httptest.Server) {
	t.Helper()
	return testServerAt(t, t.TempDir())
}

// testServerAt is testServer on the store and key agreement key in dir, as
// Run opens them.
func testServerAt(t testing.TB, dir string) (*Server, *httptest.Server) {
	t.Helper()
	st, err := store.Open(filepath.Join(dir, "outpost.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	host, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	if err := startStore(st, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	ids, err := newIdentities(dir, host)
	if err != nil {
		t.Fatal(err)
	}
	v, err := loadOrCreateVault(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		cfg: Config{FlushInterval: time.Second, EdgeMemory: Defaults.EdgeMemory}, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		store: st, now: time.Now, checkins: newCheckins(), ids: ids, vault: v,
		url: "https://outpost.test:9443", tunnelAddr: "outpost.test:8000", fingerprint: ssh.FingerprintSHA256(host.PublicKey()),
	}
	s.sessions = newSessions(s.now)
	s.tunnels = s.newTunnels(host)
	t.Cleanup(func() { _ = s.tunnels.srv.Close() })
	if s.room, err = loadRoom(st, waitingroom.NewLimiter(s.now)); err != nil {
		t.Fatal(err)
	}
	s.setOnboarding(testSecret) // onboarding devices in tests know it, as all do
	s.inflight = throttle.NewBudget(s.cfg.EdgeMemory, func() { s.metrics.slowDowns.WithLabelValues("busy").Inc() })
	s.metrics = newMetrics(s.onlineCount, s.waitingCount, s.inflightBytes)
	st.ObserveWrites(s.metrics.observeWrite)
	hs := httptest.NewServer(s.routes())
	t.Cleanup(hs.Close)
	return s, hs
}

// device is a scripted agent speaking the real protocol, proofs included.
type device struct {
	t       testing.TB
	h       http.Handler // the server's routes, called without a network
	env     uint64
	edgeID  string
	key     ed25519.PrivateKey
	dh      *ecdh.PrivateKey
	counter uint64
	mac     []byte // derived once the server's key agreement key arrived
	last    []byte // the last body sent, for replays
	lastEnc string // and its Content-Encoding
	remote  string // the address it calls from, if not httptest's default
	path    string // the endpoint it calls, if not /edge/v1/sync
	// secret is the enrollment secret of its edge key, proved on a first
	// contact to a pre-staged environment; stage gives every environment
	// testSecret. A squatter has none ("").
	secret string
	// bodyProof is the body proof header the next post carries, set by
	// sync for a body past protocol.MaxUnprovedBody as the agent does.
	bodyProof string
}

// testSecret is the enrollment secret stage gives environments.
var testSecret = strings.Repeat("s", protocol.EnrollSecretSize)

func newDevice(t testing.TB, h http.Handler, env uint64, edgeID string) *device {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	dh, _ := ecdh.X25519().GenerateKey(rand.Reader)
	return &device{t: t, h: h, env: env, edgeID: edgeID, key: key, dh: dh, secret: testSecret}
}

// keyDevice is a device installed with an edge key the API handed out: its
// environment and enrollment secret come from the key.
func keyDevice(t testing.TB, h http.Handler, edgeKey, edgeID string) *device {
	t.Helper()
	k, err := protocol.ParseEdgeKey(edgeKey)
	if err != nil {
		t.Fatalf("edge key %q: %v", edgeKey, err)
	}
	d := newDevice(t, h, k.EnvironmentID, edgeID)
	d.secret = k.Secret
	return d
}

// firstContact is the signed request that binds a device.
func (d *device) firstContact() *protocol.SyncRequest {
	return &protocol.SyncRequest{
		Version: protocol.Version, EnvID: d.env, EdgeID: d.edgeID, Include: protocol.IncludePing,
		Proof: &protocol.Proof{Key: d.key.Public().(ed25519.PublicKey), DH: d.dh.PublicKey().Bytes()},
		Agent: &protocol.AgentInfo{Version: "test", Hostname: "dev1"},
	}
}

// sync seals req with the next counter (signed when it carries Key, else
// MACed), posts it, and takes the server's key from the answer.
func (d *device) sync(req *protocol.SyncRequest) (int, *protocol.SyncAnswer, *protocol.Error) {
	d.t.Helper()
	if req.Proof == nil {
		req.Proof = &protocol.Proof{}
	}
	d.counter++
	req.Proof.Counter = d.counter
	var enroll []byte
	if req.Proof.Key != nil && d.secret != "" {
		enroll = protocol.EnrollKey(d.secret)
	}
	err := protocol.SealEnrolled(req, req.Proof, enroll, func(in []byte) []byte {
		if req.Proof.Key != nil {
			return ed25519.Sign(d.key, in)
		}
		if d.mac == nil {
			return bytes.Repeat([]byte{0xee}, protocol.MACSize) // a device without the key guesses
		}
		return protocol.MAC(d.mac, in)
	})
	if err != nil {
		d.t.Fatal(err)
	}
	body, enc, rawLen, err := protocol.EncodeBody(req)
	if err != nil {
		d.t.Fatal(err)
	}
	d.last, d.lastEnc = body, enc
	if rawLen > protocol.MaxUnprovedBody && req.EnvID != 0 {
		in := protocol.BodyProofInput(req.EnvID, body)
		var tag []byte
		switch {
		case d.mac != nil:
			tag = protocol.MAC(d.mac, in)
		case d.secret != "":
			// as the agent does: the enrollment MAC, then the signature
			tag = append(protocol.MAC(protocol.EnrollKey(d.secret), in), ed25519.Sign(d.key, in)...)
		default:
			tag = ed25519.Sign(d.key, in)
		}
		d.bodyProof = protocol.FormatBodyProof(req.EnvID, tag)
	}
	status, ans, perr := d.post(body, enc)
	if ans != nil {
		d.verifyAnswer(ans, req.Proof.Counter)
	}
	return status, ans, perr
}

// verifyAnswer checks an answer's tag as the agent does, and adopts the
// server's key when the answer names an environment.
func (d *device) verifyAnswer(ans *protocol.SyncAnswer, counter uint64) {
	d.t.Helper()
	key, env := d.mac, d.env
	if ans.Server != nil {
		if env == 0 {
			env = ans.EnvID
		}
		key = d.serverKeyFor(ans.Server, env)
	}
	raw, err := protocol.Marshal(ans)
	if err != nil {
		d.t.Fatal(err)
	}
	in, tag, err := protocol.AnswerInput(raw, counter)
	if err != nil || key == nil || !protocol.CheckMAC(key, in, tag) {
		d.t.Fatalf("the server's answer does not verify (env %d): %+v", env, ans)
	}
	if ans.Server != nil && env != 0 {
		d.mac, d.env = key, env
	}
}

// serverKeyFor checks the server's signature and derives the MAC key it
// gives for env.
func (d *device) serverKeyFor(k *protocol.ServerKey, env uint64) []byte {
	d.t.Helper()
	host, err := ssh.ParsePublicKey(k.HostKey)
	if err != nil {
		d.t.Fatal(err)
	}
	var sig ssh.Signature
	if err := ssh.Unmarshal(k.Sig, &sig); err != nil {
		d.t.Fatal(err)
	}
	if err := host.Verify(protocol.ServerKeyMessage(k.DH), &sig); err != nil {
		d.t.Fatalf("server key signature: %v", err)
	}
	pub, err := ecdh.X25519().NewPublicKey(k.DH)
	if err != nil {
		d.t.Fatal(err)
	}
	shared, _ := d.dh.ECDH(pub)
	key, err := protocol.MACKey(shared, env, d.edgeID)
	if err != nil {
		d.t.Fatal(err)
	}
	return key
}

// ping is an idle check-in of a bound device.
func (d *device) ping() *protocol.SyncRequest {
	return &protocol.SyncRequest{Version: protocol.Version, EnvID: d.env, Include: protocol.IncludePing}
}

func (d *device) post(body []byte, enc string) (int, *protocol.SyncAnswer, *protocol.Error) {
	d.t.Helper()
	path := cmp.Or(d.path, "/edge/v1/sync")
	hr := httptest.NewRequest("POST", path, bytes.NewReader(body))
	hr.Header.Set("Content-Type", protocol.ContentType)
	if enc != "" {
		hr.Header.Set("Content-Encoding", enc)
	}
	if d.bodyProof != "" {
		hr.Header.Set(protocol.BodyProofHeader, d.bodyProof)
		d.bodyProof = ""
	}
	if d.remote != "" {
		hr.RemoteAddr = d.remote
	}
	w := httptest.NewRecorder()
	d.h.ServeHTTP(w, hr)
	rb, renc := w.Body.Bytes(), w.Header().Get("Content-Encoding")
	if w.Code != http.StatusOK {
		var pe protocol.Error
		if err := protocol.ReadBody(rb, renc, &pe); err != nil {
			d.t.Fatalf("status %d with undecodable error body: %v", w.Code, err)
		}
		return w.Code, nil, &pe
	}
	var ans protocol.SyncAnswer
	if err := protocol.ReadBody(rb, renc, &ans); err != nil {
		d.t.Fatalf("decode answer: %v", err)
	}
	return w.Code, &ans, nil
}

func stage(t testing.TB, s *Server, freq *protocol.Frequencies) uint64 {
	t.Helper()
	e := &store.Environment{Name: "dev", Mode: store.ModeAsync, Trusted: true, Frequencies: freq, EnrollKey: protocol.EnrollKey(testSecret)}
	if err := s.store.CreateEnvironment(e); err != nil {
		t.Fatal(err)
	}
	return e.ID
}

func TestSyncBindsFirstDeviceAndRefusesCopies(t *testing.T) {
	s, hs := testServer(t)
	env := stage(t, s, &protocol.Frequencies{Ping: 7})
	dev := newDevice(t, hs.Config.Handler, env, "edge-1")

	status, ans, perr := dev.sync(dev.firstContact())
	if status != http.StatusOK {
		t.Fatalf("first contact: %d %v", status, perr)
	}
	if ans.EnvID != env || ans.Trust != protocol.TrustTrusted || ans.Freq == nil || ans.Freq.Ping != 7 || ans.Freq.Snapshot == 0 {
		t.Fatalf("answer = %+v (freq %+v)", ans, ans.Freq)
	}
	e, _ := s.store.Environment(env)
	if e.EdgeID != "edge-1" || !bytes.Equal(e.PublicKey, dev.key.Public().(ed25519.PublicKey)) || e.Agent == nil || e.Agent.Hostname != "dev1" {
		t.Fatalf("binding not stored: %+v", e)
	}

	// A second device with the copied edge key: another edge ID, or the same
	// edge ID with another key, is refused.
	thief := newDevice(t, hs.Config.Handler, env, "edge-2")
	if status, _, perr := thief.sync(thief.firstContact()); status != http.StatusForbidden || perr.Code != protocol.CodeIdentity {
		t.Fatalf("other edge ID: %d %+v", status, perr)
	}
	thief.edgeID = "edge-1"
	if status, _, perr := thief.sync(thief.firstContact()); status != http.StatusForbidden || perr.Code != protocol.CodeIdentity {
		t.Fatalf("same edge ID, other key: %d %+v", status, perr)
	}
	// Each refusal is in the audit log, with what was presented.
	entries, err := s.store.Audit(0, 100, true)
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, e := range entries {
		if e.Action == auditIdentityRefused && e.Target == envTarget(env) {
			refused++
		}
	}
	if refused != 2 {
		t.Fatalf("%d identity refusals audited, want 2: %+v", refused, entries)
	}

	// A copy holding the edge key and the edge ID but not the private keys
	// cannot make a MAC either.
	copyCat := newDevice(t, hs.Config.Handler, env, "edge-1")
	if status, _, perr := copyCat.sync(copyCat.ping()); status != http.StatusForbidden || perr.Code != protocol.CodeIdentity {
		t.Fatalf("copied edge key and ID, MAC guessed: %d %+v", status, perr)
	}
	// The bound device goes on, its requests MACed.
	if status, ans, perr := dev.sync(dev.ping()); status != http.StatusOK || ans.Server != nil {
		t.Fatalf("bound device after refusals: %d %v %+v", status, perr, ans)
	}
	// A request sent again as it was is refused: its counter is spent.
	if status, _, perr := dev.post(dev.last, ""); status != http.StatusForbidden || perr.Code != protocol.CodeIdentity {
		t.Fatalf("replay: %d %+v", status, perr)
	}
	// And the device still works after the replay was refused.
	if status, _, perr := dev.sync(dev.ping()); status != http.StatusOK {
		t.Fatalf("bound device after a replay: %d %v", status, perr)
	}
	if _, ok := s.checkins.get(env); !ok {
		t.Fatal("check-in not recorded")
	}
}

func TestSyncAnswerHeadersAreMinimal(t *testing.T) {
	s, hs := testServer(t)
	env := stage(t, s, nil)
	dev := newDevice(t, hs.Config.Handler, env, "edge-1")
	body, _, _ := protocol.WriteBody(dev.firstContact())
	resp, err := http.Post(hs.URL+"/edge/v1/sync", protocol.ContentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var names []string
	for k := range resp.Header {
		names = append(names, k)
	}
	slices.Sort(names)
	// Content-Encoding only when the answer is compressed; nothing else.
	if !slices.Equal(names, []string{"Content-Length", "Content-Type"}) && !slices.Equal(names, []string{"Content-Encoding", "Content-Length", "Content-Type"}) {
		t.Fatalf("edge answer headers: %v", names)
	}
}

// TestReplayProtectionSurvivesARestart: counters accepted before a restart
// stay spent after it, though nothing is written per request.
func TestReplayProtectionSurvivesARestart(t *testing.T) {
	s, hs := testServer(t)
	env := stage(t, s, nil)
	dev := newDevice(t, hs.Config.Handler, env, "edge-1")
	if status, _, perr := dev.sync(dev.firstContact()); status != http.StatusOK {
		t.Fatal(perr)
	}
	var bodies [][]byte
	for range 5 {
		if status, _, perr := dev.sync(dev.ping()); status != http.StatusOK {
			t.Fatal(perr)
		}
		bodies = append(bodies, dev.last)
	}
	e, _ := s.store.Environment(env)
	if e.LastCounter < dev.counter {
		t.Fatalf("stored floor %d is below the accepted counter %d", e.LastCounter, dev.counter)
	}
	// A crash: the server's memory is gone, the store is as it was.
	s.ids.devices = map[uint64]*deviceProofs{}
	for i, b := range bodies {
		if status, _, perr := dev.post(b, ""); status != http.StatusForbidden || perr.Code != protocol.CodeIdentity {
			t.Fatalf("replay %d after the restart: %d %+v", i, status, perr)
		}
	}
	// The device's next counter is under the floor: refused once, then it
	// skips a block and signs, as the agent does.
	if status, _, _ := dev.sync(dev.ping()); status != http.StatusForbidden {
		t.Fatalf("a counter under the floor was accepted: %d", status)
	}
	dev.counter += counterFloorStep
	if status, ans, perr := dev.sync(dev.firstContact()); status != http.StatusOK || ans.Server == nil {
		t.Fatalf("signed contact past the floor: %d %+v", status, perr)
	}
	if status, _, perr := dev.sync(dev.ping()); status != http.StatusOK {
		t.Fatalf("MACed ping after the restart: %d %+v", status, perr)
	}
}

func TestSyncRefusals(t *testing.T) {
	s, hs := testServer(t)
	env := stage(t, s, nil)
	dev := newDevice(t, hs.Config.Handler, env, "edge-1")

	t.Run("unsupported version", func(t *testing.T) {
		req := dev.firstContact()
		req.Version = protocol.Version + 1
		status, _, perr := dev.sync(req)
		if status != http.StatusBadRequest || perr.Code != protocol.CodeUnsupportedVersion || perr.Message == "" {
			t.Fatalf("%d %+v", status, perr)
		}
	})
	t.Run("unknown environment", func(t *testing.T) {
		req := dev.firstContact()
		req.EnvID = 999
		if status, _, perr := dev.sync(req); status != http.StatusNotFound || perr.Code != protocol.CodeUnknownEnvironment {
			t.Fatalf("%d %+v", status, perr)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		if status, _, perr := dev.post([]byte{0xff, 0x00, 0x13}, ""); status != http.StatusBadRequest || perr.Code != protocol.CodeMalformed {
			t.Fatalf("%d %+v", status, perr)
		}
	})
	t.Run("too large", func(t *testing.T) {
		if status, _, perr := dev.post(make([]byte, protocol.MaxCompressedBody+1), ""); status != http.StatusRequestEntityTooLarge || perr.Code != protocol.CodeLimit {
			t.Fatalf("%d %+v", status, perr)
		}
	})
	t.Run("unknown encoding", func(t *testing.T) {
		body, _, _ := protocol.WriteBody(dev.firstContact())
		if status, _, perr := dev.post(body, "br"); status != http.StatusBadRequest || perr.Code != protocol.CodeMalformed {
			t.Fatalf("%d %+v", status, perr)
		}
	})
	t.Run("first contact not signed", func(t *testing.T) {
		req := dev.firstContact()
		req.Proof = nil
		if status, _, perr := dev.sync(req); status != http.StatusForbidden || perr.Code != protocol.CodeIdentity {
			t.Fatalf("%d %+v", status, perr)
		}
	})
	t.Run("no proof at all", func(t *testing.T) {
		body, enc, _ := protocol.WriteBody(&protocol.SyncRequest{Version: protocol.Version, EnvID: env, EdgeID: "edge-1", Include: protocol.IncludePing})
		if status, _, perr := dev.post(body, enc); status != http.StatusForbidden || perr.Code != protocol.CodeIdentity {
			t.Fatalf("%d %+v", status, perr)
		}
	})
	t.Run("signature by another key", func(t *testing.T) {
		req := dev.firstContact()
		other := newDevice(t, hs.Config.Handler, env, "edge-1")
		req.Proof.Key = other.key.Public().(ed25519.PublicKey) // claims a key it did not sign with
		if status, _, perr := dev.sync(req); status != http.StatusForbidden || perr.Code != protocol.CodeIdentity {
			t.Fatalf("%d %+v", status, perr)
		}
	})
}

func testSnapshot(n int, state snapshot.State) *snapshot.Snapshot {
	d := &snapshot.Snapshot{Engine: snapshot.Engine{Hostname: "dev1", ServerVersion: "27.0.1"}}
	for i := range n {
		d.Containers = append(d.Containers, snapshot.Container{
			ID: string(rune('a'+i)) + "00000000000", Name: "c" + string(rune('a'+i)), State: state, Image: "busybox",
		})
	}
	snapshot.Normalize(d)
	return d
}

func push(t testing.TB, seq, base uint64, data any, of *snapshot.Snapshot) *protocol.SnapshotPush {
	t.Helper()
	b, err := protocol.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := snapshot.Hash(of)
	return &protocol.SnapshotPush{Seq: seq, Base: base, Hash: h[:snapshot.HashSize], Data: b}
}

func TestSyncSnapshotsFullThenDelta(t *testing.T) {
	s, hs := testServer(t)
	env := stage(t, s, nil)
	dev := newDevice(t, hs.Config.Handler, env, "edge-1")
	if status, _, perr := dev.sync(dev.firstContact()); status != 200 {
		t.Fatal(perr)
	}
	snapReq := func(p *protocol.SnapshotPush) *protocol.SnapshotAck {
		t.Helper()
		status, ans, perr := dev.sync(&protocol.SyncRequest{Version: protocol.Version, EnvID: env, Include: protocol.IncludeSnapshot, Snapshot: p})
		if status != 200 || ans.Snapshot == nil {
			t.Fatalf("push seq %d: %d %+v %+v", p.Seq, status, perr, ans)
		}
		return ans.Snapshot
	}

	full := testSnapshot(3, snapshot.StateRunning)
	if ack := snapReq(push(t, 1, 0, full, full)); ack.Stored != 1 || ack.SendFull {
		t.Fatalf("full push ack = %+v", ack)
	}
	next := testSnapshot(3, snapshot.StateRunning)
	next.Containers[1].State = snapshot.StateExited
	d, _ := snapshot.Compute(full, next)
	if ack := snapReq(push(t, 2, 1, d, next)); ack.Stored != 2 || ack.SendFull {
		t.Fatalf("delta push ack = %+v", ack)
	}
	sn, _ := s.store.Snapshot(env)
	var got snapshot.Snapshot
	if err := protocol.Unmarshal(sn.Data, &got); err != nil {
		t.Fatal(err)
	}
	if sn.Seq != 2 || sn.Kind != "delta" || got.Containers[1].State != snapshot.StateExited {
		t.Fatalf("stored seq %d kind %s containers %+v", sn.Seq, sn.Kind, got.Containers)
	}

	// A delta from a base the server does not hold asks for a full one.
	if ack := snapReq(push(t, 4, 3, d, next)); !ack.SendFull || ack.Stored != 2 {
		t.Fatalf("delta on a missing base: ack = %+v", ack)
	}
	// A delta that rebuilds to another hash asks for a full one, and the
	// stored snapshot stays as it was.
	bad := push(t, 3, 2, d, full)
	if ack := snapReq(bad); !ack.SendFull {
		t.Fatalf("delta with a wrong hash: ack = %+v", ack)
	}
	if sn2, _ := s.store.Snapshot(env); sn2.Seq != 2 {
		t.Fatalf("a refused delta changed the stored snapshot to seq %d", sn2.Seq)
	}
	hist, _ := s.store.History(env)
	if len(hist) != 2 || hist[0].Kind != "full" || hist[1].Kind != "delta" || len(hist[1].Data) == 0 {
		t.Fatalf("history = %+v", hist)
	}
}

func TestAPIRequiresToken(t *testing.T) {
	s, hs := testServer(t)
	if _, err := s.ensureAdmin("correct-horse"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(hs.URL + "/api/environments")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
	for pw, want := range map[string]int{"wrong-password": 401, "correct-horse": 200} {
		b, _ := json.Marshal(map[string]string{"username": "admin", "password": pw})
		resp, err := http.Post(hs.URL+"/api/auth", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("login with %q: %d, want %d", pw, resp.StatusCode, want)
		}
	}
}

func TestOnlineStatusFollowsOwnFrequency(t *testing.T) {
	now := int64(1_800_000_000)
	hourly := protocol.Frequencies{Ping: 3600}
	if got := onlineStatus(now-600, hourly, now); got != "online" {
		t.Errorf("hourly device seen 10 min ago: %s", got)
	}
	fast := protocol.Frequencies{Ping: 5}
	if got := onlineStatus(now-600, fast, now); got != "offline" {
		t.Errorf("5 s device seen 10 min ago: %s", got)
	}
	if got := onlineStatus(0, fast, now); got != "never" {
		t.Errorf("never seen: %s", got)
	}
}
