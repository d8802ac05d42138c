package edgeagent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"outpost/internal/testenv"
	"outpost/protocol"
	"outpost/snapshot"
)

// frameServer serves h as the real server does for an agent that
// negotiates protocol.ALPN: one frame each way per exchange. It counts the
// connections it accepts and the requests marked last.
type frameServer struct {
	*httptest.Server
	conns, lasts, closed atomic.Int64
	// dropAfter, when set, closes every connection after its answer
	// without saying so, as a server does once its idle timeout passes.
	dropAfter atomic.Bool
}

func newFrameServer(t *testing.T, h http.Handler) *frameServer {
	t.Helper()
	fs := &frameServer{Server: httptest.NewUnstartedServer(h)}
	fs.TLS = &tls.Config{NextProtos: []string{protocol.ALPN, "http/1.1"}}
	fs.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			fs.conns.Add(1)
		}
	}
	fs.Config.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){
		protocol.ALPN: func(_ *http.Server, c *tls.Conn, h http.Handler) { fs.serve(t, c, h) },
	}
	fs.StartTLS()
	t.Cleanup(fs.Close)
	return fs
}

func (fs *frameServer) serve(t *testing.T, c *tls.Conn, h http.Handler) {
	defer fs.closed.Add(1)
	defer func() { _ = c.NetConn().Close() }()
	br := bufio.NewReader(c)
	for {
		f, err := protocol.ReadFrame(br)
		if err != nil {
			return
		}
		r := httptest.NewRequest(http.MethodPost, f.Path, bytes.NewReader(f.Body))
		r.Header.Set("Content-Type", protocol.ContentType)
		if f.Encoding != "" {
			r.Header.Set("Content-Encoding", f.Encoding)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if f.Close {
			fs.lasts.Add(1)
		}
		out, err := protocol.AppendFrame(nil, &protocol.Frame{Status: w.Code, Encoding: w.Header().Get("Content-Encoding"), Close: f.Close, Body: w.Body.Bytes()})
		if err != nil {
			t.Error(err)
			return
		}
		if _, err := c.Write(out); err != nil || f.Close || fs.dropAfter.Load() {
			return
		}
	}
}

// writeCounter counts the bytes and the writes on a TCP connection.
type writeCounter struct {
	net.Conn
	mu             sync.Mutex
	in, out, calls int
}

func (c *writeCounter) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.in += n
	c.mu.Unlock()
	return n, err
}

func (c *writeCounter) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	c.out += n
	c.calls++
	c.mu.Unlock()
	return n, err
}

func (c *writeCounter) counts() (in, out, calls int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.in, c.out, c.calls
}

// counting dials through a writeCounter, keeping the last one.
func counting(last **writeCounter) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		*last = &writeCounter{Conn: c}
		return *last, nil
	}
}

// TestFramedWireBytesPerIdlePing: with a server that speaks frames, an idle
// ping on the kept connection costs its bodies, a frame head each way and
// two TLS records: under 140 bytes (HTTP/1.1 took 313).
func TestFramedWireBytesPerIdlePing(t *testing.T) {
	srv := newScriptedServer(t, ackAll)
	fs := newFrameServer(t, srv)
	var wc *writeCounter
	s := newTestSyncer(t, srv, fs.URL, t.TempDir(), &fakeCollector{d: &snapshot.Snapshot{}})
	s.cl = newClient(fs.URL, true, nil, counting(&wc))
	ctx := context.Background()
	if err := s.exchange(ctx, protocol.IncludePing); err != nil {
		t.Fatal(err)
	}
	if !s.cl.Framed() {
		t.Fatal("the client did not negotiate frames")
	}
	in0, out0, _ := wc.counts()
	const pings = 20
	for range pings {
		s.cl.Idle(time.Minute)
		if err := s.exchange(ctx, protocol.IncludePing|protocol.IncludeCommands); err != nil {
			t.Fatal(err)
		}
	}
	in, out, _ := wc.counts()
	per := (in - in0 + out - out0) / pings
	t.Logf("first exchange: %d B; each idle ping after it: %d B", in0+out0, per)
	if per > 140 {
		t.Errorf("an idle ping costs %d B on a kept framed connection, want under 140", per)
	}
	if n := fs.conns.Load(); n != 1 {
		t.Errorf("%d connections for exchanges a minute apart, want 1", n)
	}
}

// TestClientClosesWhenTheNextExchangeIsFar: an exchange an hour before the
// next goes on a connection of its own, which the server closes with the
// answer; exchanges a minute apart share one.
func TestClientClosesWhenTheNextExchangeIsFar(t *testing.T) {
	srv := newScriptedServer(t, ackAll)
	fs := newFrameServer(t, srv)
	s := newTestSyncer(t, srv, fs.URL, t.TempDir(), &fakeCollector{d: &snapshot.Snapshot{}})
	ctx := context.Background()
	for range 3 {
		s.cl.Idle(time.Hour)
		if s.cl.Connected() {
			t.Fatal("the connection is still open with the next exchange an hour away")
		}
		if err := s.exchange(ctx, protocol.IncludePing); err != nil {
			t.Fatal(err)
		}
		if s.cl.Connected() {
			t.Error("the connection is still open after the last exchange on it")
		}
	}
	if c, l := fs.conns.Load(), fs.lasts.Load(); c != 3 || l != 3 {
		t.Errorf("%d connections and %d last requests for three hourly exchanges, want 3 and 3", c, l)
	}
	for range 3 {
		s.cl.Idle(time.Minute)
		if err := s.exchange(ctx, protocol.IncludePing); err != nil {
			t.Fatal(err)
		}
	}
	if c := fs.conns.Load(); c != 4 {
		t.Errorf("%d connections in all, want one more for three exchanges a minute apart", c)
	}
}

// TestClientRedialsWhenTheServerClosedTheKeptConnection: a kept connection
// the server closed meanwhile (its idle timeout) is not written to; the
// exchange goes on a new one.
func TestClientRedialsWhenTheServerClosedTheKeptConnection(t *testing.T) {
	srv := newScriptedServer(t, ackAll)
	fs := newFrameServer(t, srv)
	fs.dropAfter.Store(true)
	s := newTestSyncer(t, srv, fs.URL, t.TempDir(), &fakeCollector{d: &snapshot.Snapshot{}})
	ctx := context.Background()
	for i := range 3 {
		s.cl.Idle(time.Minute)
		if err := s.exchange(ctx, protocol.IncludePing); err != nil {
			t.Fatalf("exchange %d: %v", i, err)
		}
		testenv.Eventually(t, 5*time.Second, func() (bool, string) {
			return fs.closed.Load() == int64(i+1), "the server closes the connection"
		})
	}
	if c := fs.conns.Load(); c != 3 {
		t.Errorf("%d connections, want 3", c)
	}
}

// TestClientSendsFinishedWithTheRequest: on a new connection the client
// writes twice: its ClientHello, then its handshake Finished together with
// the first request.
func TestClientSendsFinishedWithTheRequest(t *testing.T) {
	srv := newScriptedServer(t, ackAll)
	fs := newFrameServer(t, srv)
	var wc *writeCounter
	s := newTestSyncer(t, srv, fs.URL, t.TempDir(), &fakeCollector{d: &snapshot.Snapshot{}})
	s.cl = newClient(fs.URL, true, nil, counting(&wc))
	s.cl.Idle(time.Hour)
	if err := s.exchange(context.Background(), protocol.IncludePing); err != nil {
		t.Fatal(err)
	}
	if _, _, calls := wc.counts(); calls != 2 {
		t.Errorf("%d writes for a connection's only exchange, want 2", calls)
	}
}

// TestClientSpeaksHTTPToServersWithoutFrames: a server that negotiates no
// frames (before them, or a proxy) gets HTTP/1.1, and one that speaks TLS
// 1.2 only gets a second ClientHello that offers it.
func TestClientSpeaksHTTPToServersWithoutFrames(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  *tls.Config
	}{
		{"no ALPN", &tls.Config{}},
		{"http/1.1", &tls.Config{NextProtos: []string{"h2", "http/1.1"}}},
		{"TLS 1.2 only", &tls.Config{MaxVersion: tls.VersionTLS12}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newScriptedServer(t, ackAll)
			hs := httptest.NewUnstartedServer(srv)
			hs.TLS = tc.tls
			hs.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused TLS 1.3 ClientHello
			hs.StartTLS()
			defer hs.Close()
			s := newTestSyncer(t, srv, hs.URL, t.TempDir(), &fakeCollector{d: docker(snapshot.StateRunning)})
			for i := range 3 {
				if err := s.exchange(context.Background(), protocol.IncludePing|protocol.IncludeSnapshot); err != nil {
					t.Fatalf("exchange %d: %v", i, err)
				}
				s.cl.Idle(time.Minute)
			}
			if s.cl.Framed() {
				t.Error("framed with a server that does not know frames")
			}
		})
	}
}
