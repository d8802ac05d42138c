package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"outpost/protocol"
	"outpost/snapshot"
	"outpost/throttle"
)

// framesServer serves s's routes over TLS as Run does: edge frames for
// agents that negotiate them, HTTP/1.1 for everyone else.
func framesServer(t *testing.T, s *Server) *httptest.Server {
	t.Helper()
	hs, _ := framesServerOf(t, s, s.routes(), nil)
	return hs
}

// framesServerOf serves h as framesServer serves s's routes, and returns
// its frame connections too. edit, if not nil, changes the http.Server
// before it starts.
func framesServerOf(t *testing.T, s *Server, h http.Handler, edit func(*http.Server)) (*httptest.Server, *frameConns) {
	t.Helper()
	cert, err := loadOrCreateCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(h)
	hs.TLS = edgeTLSConfig(cert, nil)
	hs.Config.IdleTimeout = time.Minute
	fc := s.serveFrames(hs.Config)
	if edit != nil {
		edit(hs.Config)
	}
	hs.StartTLS()
	t.Cleanup(hs.Close)
	return hs, fc
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

// TestFramesRefusalOfAnUnreadBodyReachesTheAgent: a body the server
// refuses without reading it all (past MaxUnprovedBody without a body
// proof: 413 limit) still gets its answer, as over HTTP/1.1
// (TestHTTPRefusalOfAnUnreadBodyReachesTheClient): the server reads the
// rest before it answers and closes, so its close sends no RST that would
// make the agent's kernel drop the answer.
func TestFramesRefusalOfAnUnreadBodyReachesTheAgent(t *testing.T) {
	s, _ := testServer(t)
	hs := framesServer(t, s)
	for i := range 3 {
		c := dialFrames(t, hs, nil, protocol.ALPN)
		body := make([]byte, 1<<20) // no body proof: refused past ~68 KiB
		_, _ = rand.Read(body)
		f, err := sendWhileReading(t, c, &protocol.Frame{Path: protocol.SyncPath, Encoding: protocol.EncodingZstd, Body: body})
		if err != nil {
			t.Fatalf("try %d: no answer frame to a refused body: %v (over HTTP/1.1 the agent gets 413 %s)", i, err, protocol.CodeLimit)
		}
		if f.Status != http.StatusRequestEntityTooLarge || !f.Close {
			t.Fatalf("try %d: answer %d %q close %v, want 413 and close (the handler asks for it)", i, f.Status, f.Body, f.Close)
		}
	}
}

// TestFramesBusyAnswerReachesTheAgent: a device's large body (a snapshot,
// with its body proof) that finds the in-flight budget spent is answered
// 429 slow_down with a Retry-After, which the agent obeys; it must not be
// lost to a RST just when the server is shedding load.
func TestFramesBusyAnswerReachesTheAgent(t *testing.T) {
	s, _ := testServer(t)
	s.inflight = throttle.NewBudget(256<<10, nil) // a server under load: 256 KiB left
	hs := framesServer(t, s)
	c := dialFrames(t, hs, nil, protocol.ALPN)
	body := make([]byte, 2<<20)
	_, _ = rand.Read(body)
	// Any proof: it is checked once the body has arrived, and lets the
	// body be read up to MaxCompressedBody.
	f, err := sendWhileReading(t, c, &protocol.Frame{Path: protocol.SyncPath, Encoding: protocol.EncodingZstd, Proof: "1.AAAA", Body: body})
	if err != nil {
		t.Fatalf("no answer frame to a body the busy server refused: %v (want 429 %s, Retry-After %d s)", err, protocol.CodeSlowDown, busyRetry)
	}
	var pe protocol.Error
	if err := protocol.ReadBody(f.Body, f.Encoding, &pe); err != nil || f.Status != http.StatusTooManyRequests || pe.Code != protocol.CodeSlowDown {
		t.Fatalf("answer %d %+v (%v), want 429 %s", f.Status, pe, err, protocol.CodeSlowDown)
	}
}

// TestHTTPRefusalOfAnUnreadBodyReachesTheClient is the request of
// TestFramesRefusalOfAnUnreadBodyReachesTheAgent over HTTP/1.1: what
// frames must match.
func TestHTTPRefusalOfAnUnreadBodyReachesTheClient(t *testing.T) {
	s, _ := testServer(t)
	hs := framesServer(t, s)
	body := make([]byte, 1<<20)
	_, _ = rand.Read(body)
	req, _ := http.NewRequest(http.MethodPost, hs.URL+protocol.SyncPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", protocol.ContentType)
	req.Header.Set("Content-Encoding", protocol.EncodingZstd)
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatalf("HTTP/1.1: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("HTTP/1.1: %d, want 413", resp.StatusCode)
	}
}

// sendWhileReading writes f on c as the server reads it, and reads the
// answer meanwhile: the write may fail once the server has closed, and
// what matters is the answer.
func sendWhileReading(t *testing.T, c *tls.Conn, f *protocol.Frame) (protocol.Frame, error) {
	t.Helper()
	out, err := protocol.AppendFrame(nil, f)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	werr := make(chan error, 1)
	go func() { _, err := c.Write(out); werr <- err }()
	ans, err := protocol.ReadFrame(bufio.NewReader(c))
	if werr := <-werr; err == nil && werr != nil {
		err = fmt.Errorf("write the frame: %w", werr)
	}
	return ans, err
}

// unreadBody answers 403 without reading the request's body.
var unreadBody = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	w.WriteHeader(http.StatusForbidden)
	_, _ = w.Write([]byte("refused"))
})

// TestFramesUnreadBodyThatArrivesKeepsTheConnection: a body the handler
// did not read is read and discarded by the server, which then serves the
// next frame on the same connection, since nobody asked for a close.
func TestFramesUnreadBodyThatArrivesKeepsTheConnection(t *testing.T) {
	s, _ := testServer(t)
	hs, _ := framesServerOf(t, s, unreadBody, nil)
	c := dialFrames(t, hs, nil, protocol.ALPN)
	br := bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	for i := range 3 {
		out, _ := protocol.AppendFrame(nil, &protocol.Frame{Path: protocol.SyncPath, Body: bytes.Repeat([]byte{byte(i)}, 10<<10)})
		if _, err := c.Write(out); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		f, err := protocol.ReadFrame(br)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.Status != http.StatusForbidden || f.Close || string(f.Body) != "refused" {
			t.Fatalf("frame %d: answer %d %q close %v, want 403 \"refused\" and the connection kept", i, f.Status, f.Body, f.Close)
		}
	}
}

// TestFramesUnreadBodyThatStallsGetsTheAnswerAndAClose: a body the handler
// did not read and whose rest does not come within frameDrainTime (a slow
// link, or an agent that stalls) leaves the stream out of sync: the agent
// gets the answer, marked close, then the server's FIN, not a RST.
func TestFramesUnreadBodyThatStallsGetsTheAnswerAndAClose(t *testing.T) {
	s, _ := testServer(t)
	hs, _ := framesServerOf(t, s, unreadBody, nil)
	c := dialFrames(t, hs, nil, protocol.ALPN)
	out, _ := protocol.AppendFrame(nil, &protocol.Frame{Path: protocol.SyncPath, Body: make([]byte, 1<<20)})
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(out[:128<<10]); err != nil { // and the rest never
		t.Fatal(err)
	}
	start := time.Now()
	br := bufio.NewReader(c)
	f, err := protocol.ReadFrame(br)
	if err != nil {
		t.Fatalf("no answer to a body left unread: %v", err)
	}
	if f.Status != http.StatusForbidden || !f.Close {
		t.Fatalf("answer %d %q close %v, want 403 and close", f.Status, f.Body, f.Close)
	}
	if took := time.Since(start); took < frameDrainTime/2 {
		t.Errorf("answered after %v: the server did not wait for the rest of the body", took)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the answer: %v, want EOF (the server's FIN)", err)
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

// TestTLSSessionsResume: a reconnect resumes its TLS session (no
// certificate, no signature on a metered link), with Go's own tickets.
func TestTLSSessionsResume(t *testing.T) {
	s, _ := testServer(t)
	hs := framesServer(t, s)
	cache := tls.NewLRUClientSessionCache(1)
	first := dialFrames(t, hs, cache, protocol.ALPN)
	// The ticket comes after the handshake: read until it is in.
	_ = first.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, _ = first.Read(make([]byte, 1))
	if !dialFrames(t, hs, cache, protocol.ALPN).ConnectionState().DidResume {
		t.Fatal("the reconnect did not resume")
	}
}
