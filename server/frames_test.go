package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"outpost/protocol"
	"outpost/snapshot"
)

// framesServer serves s's routes over TLS as Run does: edge frames for
// agents that negotiate them, HTTP/1.1 for everyone else.
func framesServer(t *testing.T, s *Server) *httptest.Server {
	t.Helper()
	cert, err := loadOrCreateCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(s.routes())
	hs.TLS = edgeTLSConfig(cert, nil)
	hs.Config.IdleTimeout = time.Minute
	s.serveFrames(hs.Config)
	hs.StartTLS()
	t.Cleanup(hs.Close)
	return hs
}

// frameConn dials hs offering protos, as an agent does.
func dialFrames(t *testing.T, hs *httptest.Server, cache tls.ClientSessionCache, protos ...string) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", hs.Listener.Addr().String(), &tls.Config{
		InsecureSkipVerify: true, NextProtos: protos, ClientSessionCache: cache, //nolint:gosec // test certificate
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// frameHandler is an http.Handler that carries each request to the server
// as a frame on one kept connection, so the scripted device of the sync
// tests speaks frames.
type frameHandler struct {
	t  *testing.T
	c  *tls.Conn
	br *bufio.Reader
}

func (h *frameHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	out, err := protocol.AppendFrame(nil, &protocol.Frame{Path: r.URL.Path, Encoding: r.Header.Get("Content-Encoding"),
		Proof: r.Header.Get(protocol.BodyProofHeader), Body: body})
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.c.Write(out); err != nil {
		h.t.Fatal(err)
	}
	f, err := protocol.ReadFrame(h.br)
	if err != nil {
		h.t.Fatalf("read answer frame: %v", err)
	}
	if f.Encoding != "" {
		w.Header().Set("Content-Encoding", f.Encoding)
	}
	w.WriteHeader(f.Status)
	_, _ = w.Write(f.Body)
}

// TestFramesServeTheEdgeEndpoints runs a device's life over frames: first
// contact, a full snapshot, a delta, pings and a refusal, on one
// connection, through the same handlers as HTTP.
func TestFramesServeTheEdgeEndpoints(t *testing.T) {
	s, _ := testServer(t)
	hs := framesServer(t, s)
	c := dialFrames(t, hs, nil, protocol.ALPN, "http/1.1")
	if got := c.ConnectionState().NegotiatedProtocol; got != protocol.ALPN {
		t.Fatalf("negotiated %q, want %q", got, protocol.ALPN)
	}
	h := &frameHandler{t: t, c: c, br: bufio.NewReader(c)}
	env := stage(t, s, &protocol.Frequencies{Ping: 60})
	dev := newDevice(t, h, env, "edge-1")
	if code, _, perr := dev.sync(dev.firstContact()); code != http.StatusOK {
		t.Fatalf("first contact: %d %+v", code, perr)
	}
	snap := testSnapshot(50, snapshot.StateRunning)
	req := dev.ping()
	req.Include |= protocol.IncludeSnapshot
	req.Snapshot = push(t, 1, 0, snap, snap)
	if code, ans, perr := dev.sync(req); code != http.StatusOK || ans.Snapshot == nil || ans.Snapshot.Stored != 1 {
		t.Fatalf("full snapshot: %d %+v %+v", code, ans, perr)
	}
	next := testSnapshot(50, snapshot.StateRunning)
	next.Containers[3].State = snapshot.StateExited
	d, err := snapshot.Compute(snap, next)
	if err != nil {
		t.Fatal(err)
	}
	req = dev.ping()
	req.Include |= protocol.IncludeSnapshot
	req.Snapshot = push(t, 2, 1, d, next)
	if code, ans, perr := dev.sync(req); code != http.StatusOK || ans.Snapshot == nil || ans.Snapshot.Stored != 2 {
		t.Fatalf("delta: %d %+v %+v", code, ans, perr)
	}
	for range 3 {
		if code, _, perr := dev.sync(dev.ping()); code != http.StatusOK {
			t.Fatalf("ping: %d %+v", code, perr)
		}
	}
	// A replayed body is refused with its status, on the same connection.
	if code, _, perr := dev.post(dev.last, dev.lastEnc); code != http.StatusForbidden || perr.Code != protocol.CodeIdentity {
		t.Fatalf("replay: %d %+v, want 403 %s", code, perr, protocol.CodeIdentity)
	}
	if code, _, perr := dev.sync(dev.ping()); code != http.StatusOK {
		t.Fatalf("ping after a refusal: %d %+v", code, perr)
	}
}

// TestFramesCloseWithTheLastAnswer: a request marked last is answered, and
// the connection closed by the server right after.
func TestFramesCloseWithTheLastAnswer(t *testing.T) {
	s, _ := testServer(t)
	hs := framesServer(t, s)
	c := dialFrames(t, hs, nil, protocol.ALPN)
	body, _, err := protocol.WriteBody(&protocol.SyncRequest{Version: protocol.Version, EnvID: 99, Include: protocol.IncludePing})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := protocol.AppendFrame(nil, &protocol.Frame{Path: protocol.SyncPath, Close: true, Body: body})
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	f, err := protocol.ReadFrame(br)
	if err != nil {
		t.Fatal(err)
	}
	if f.Status != http.StatusNotFound || !f.Close {
		t.Errorf("answer: status %d close %v, want 404 (no such environment) and close", f.Status, f.Close)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("after the last answer: %v, want the connection closed", err)
	}
}

// TestFramesRefuseWhatIsNotAFrame: a connection that sends something else
// is closed without an answer.
func TestFramesRefuseWhatIsNotAFrame(t *testing.T) {
	s, _ := testServer(t)
	hs := framesServer(t, s)
	for _, junk := range [][]byte{
		[]byte("POST /edge/v1/sync HTTP/1.1\r\n\r\n"),
		{0x02, 0x00, 0xa0}, // an answer frame from the client
		{0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		c := dialFrames(t, hs, nil, protocol.ALPN)
		if _, err := c.Write(junk); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 64)); err == nil {
			t.Errorf("%q: answered %d bytes, want the connection closed", junk, n)
		}
	}
}

// TestFramesOthersGetHTTP: browsers (h2, http/1.1) and agents from before
// frames (no ALPN) are served HTTP/1.1 on the same port.
func TestFramesOthersGetHTTP(t *testing.T) {
	s, _ := testServer(t)
	hs := framesServer(t, s)
	for _, protos := range [][]string{nil, {"h2", "http/1.1"}} {
		c := dialFrames(t, hs, nil, protos...)
		if got := c.ConnectionState().NegotiatedProtocol; got != "" && got != "http/1.1" {
			t.Errorf("%q: negotiated %q", protos, got)
		}
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: outpost\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%q: %v", protos, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("%q: GET /healthz %d, want 204", protos, resp.StatusCode)
		}
	}
}

// TestFramesShutdownClosesIdleConnections: Shutdown does not wait for an
// agent's kept frame connection.
func TestFramesShutdownClosesIdleConnections(t *testing.T) {
	s, _ := testServer(t)
	hs := framesServer(t, s)
	c := dialFrames(t, hs, nil, protocol.ALPN)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := hs.Config.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v after %v", err, time.Since(start))
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the idle frame connection is still open after Shutdown")
	}
}

// TestTLSSessionsResumeWithShortTickets: a reconnect resumes with the
// server-side session its 16-byte ticket names, and that ticket resumes
// only once.
func TestTLSSessionsResumeWithShortTickets(t *testing.T) {
	s, _ := testServer(t)
	hs := framesServer(t, s)
	cache := &lastTicket{ClientSessionCache: tls.NewLRUClientSessionCache(1)}
	first := dialFrames(t, hs, cache, protocol.ALPN)
	// The ticket comes after the handshake: read until it is in.
	_ = first.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, _ = first.Read(make([]byte, 1))
	if len(cache.ticket) != ticketSize {
		t.Fatalf("ticket of %d bytes, want %d", len(cache.ticket), ticketSize)
	}
	used, _ := cache.Get(cache.key)
	if used == nil {
		t.Fatal("no session in the cache")
	}
	if !dialFrames(t, hs, cache, protocol.ALPN).ConnectionState().DidResume {
		t.Fatal("the reconnect did not resume")
	}
	replay := tls.NewLRUClientSessionCache(1)
	replay.Put(cache.key, used)
	if dialFrames(t, hs, replay, protocol.ALPN).ConnectionState().DidResume {
		t.Error("a used ticket resumed again")
	}
}

// lastTicket records the last ticket the client was given.
type lastTicket struct {
	tls.ClientSessionCache
	key    string
	ticket []byte
}

func (l *lastTicket) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil {
		if t, _, err := cs.ResumptionState(); err == nil {
			l.key, l.ticket = key, t
		}
	}
	l.ClientSessionCache.Put(key, cs)
}

// TestTLSSessionsAreSingleUseAndBounded checks the store directly.
func TestTLSSessionsAreSingleUseAndBounded(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ts := newTLSSessions(func() time.Time { return now })
	cert, err := loadOrCreateCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// A real session state, from a real handshake.
	var state *tls.SessionState
	srvCfg := &tls.Config{Certificates: []tls.Certificate{cert}, WrapSession: func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		state = ss
		return ts.wrap(cs, ss)
	}}
	a, b := net.Pipe()
	go func() {
		sc := tls.Server(a, srvCfg)
		_ = sc.Handshake()
		_, _ = sc.Write([]byte{1})
	}()
	cc := tls.Client(b, &tls.Config{InsecureSkipVerify: true, ClientSessionCache: tls.NewLRUClientSessionCache(1)}) //nolint:gosec // test
	if _, err := cc.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	_ = b.Close() // not cc.Close: its close_notify would wait on the pipe
	if state == nil || len(ts.m) != 1 {
		t.Fatalf("no session kept (%d)", len(ts.m))
	}
	var id []byte
	for k := range ts.m {
		id = append([]byte(nil), k[:]...)
	}
	if ss, err := ts.unwrap(id, tls.ConnectionState{}); err != nil || ss == nil {
		t.Fatalf("unwrap: %v %v", ss, err)
	}
	if ss, _ := ts.unwrap(id, tls.ConnectionState{}); ss != nil {
		t.Error("a ticket resumed twice")
	}
	if ss, _ := ts.unwrap([]byte("a ticket of another size"), tls.ConnectionState{}); ss != nil {
		t.Error("a foreign ticket resumed")
	}
	// Expired sessions do not resume.
	id2, err := ts.wrap(tls.ConnectionState{}, state)
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(ticketLifetime + time.Second)
	if ss, _ := ts.unwrap(id2, tls.ConnectionState{}); ss != nil {
		t.Error("an expired ticket resumed")
	}
	// The store stays bounded.
	ts.max = 1000
	for range ts.max + 10 {
		if _, err := ts.wrap(tls.ConnectionState{}, state); err != nil {
			t.Fatal(err)
		}
	}
	if len(ts.m) > ts.max {
		t.Errorf("%d sessions kept, bound %d", len(ts.m), ts.max)
	}
}
