package server

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"outpost/protocol"
)

// Edge frames (protocol.ALPN): an agent that negotiates them sends each
// exchange as one frame and gets one back, on the same port as HTTPS.
// Each frame becomes an http.Request to the edge route it names, served by
// the same handlers (and limits, deadlines, metrics) as over HTTP/1.1; only
// the framing differs. Agents from before frames, and browsers, negotiate
// HTTP/1.1 and are served as they always were.

// serveFrames makes srv serve edge frames on the connections that
// negotiate them. Call it before srv serves.
func (s *Server) serveFrames(srv *http.Server) {
	fc := &frameConns{conns: map[*frameConn]struct{}{}}
	if srv.TLSNextProto == nil {
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	srv.TLSNextProto[protocol.ALPN] = func(hs *http.Server, tc *tls.Conn, h http.Handler) {
		s.serveFrameConn(hs, fc, tc, h)
	}
	// net/http leaves a TLSNextProto connection to its handler: Shutdown
	// would wait for one held idle by its agent.
	srv.RegisterOnShutdown(fc.shutdown)
}

// frameConns are the open frame connections, for Shutdown.
type frameConns struct {
	mu      sync.Mutex // guards conns and closing; held for no network I/O
	conns   map[*frameConn]struct{}
	closing bool
}

// frameConn is one connection, and whether it waits for a frame.
type frameConn struct {
	raw  net.Conn
	idle bool // guarded by frameConns.mu
}

// wait marks c idle with a read deadline of timeout for its next frame,
// unless the server is shutting down (false).
func (fs *frameConns) wait(c *frameConn, timeout time.Duration) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.closing {
		return false
	}
	c.idle = true
	_ = c.raw.SetReadDeadline(time.Now().Add(timeout)) // before shutdown can set its own
	return true
}

func (fs *frameConns) busy(c *frameConn) {
	fs.mu.Lock()
	c.idle = false
	fs.mu.Unlock()
}

// shutdown ends the idle connections now, and the busy ones after their
// answer.
func (fs *frameConns) shutdown() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.closing = true
	for c := range fs.conns {
		if c.idle {
			_ = c.raw.SetReadDeadline(time.Now())
		}
	}
}

// serveFrameConn serves the frames of one connection until the agent
// closes it, asks for its close, stays idle past the server's
// IdleTimeout, or sends something that is not a frame.
//
// The connection is closed without a TLS close_notify: each frame says
// where it ends, and the alert would cost a packet each way on the
// device's link. When the agent asks for the close, the server's FIN
// leaves with the answer.
func (s *Server) serveFrameConn(hs *http.Server, fs *frameConns, tc *tls.Conn, h http.Handler) {
	c := &frameConn{raw: tc.NetConn()}
	defer func() { _ = c.raw.Close() }() // first: net/http's own close of tc then sends nothing
	fs.mu.Lock()
	fs.conns[c] = struct{}{}
	fs.mu.Unlock()
	defer func() {
		fs.mu.Lock()
		delete(fs.conns, c)
		fs.mu.Unlock()
	}()
	ctx := context.Background()
	if b, ok := h.(interface{ BaseContext() context.Context }); ok {
		ctx = b.BaseContext()
	}
	state := tc.ConnectionState()
	// tls.Conn holds the record it decrypted: a reader of bufio's smallest
	// size is enough to read a frame's head, and an idle connection then
	// holds 16 bytes of it, not 4 KB (110,000 of them: 440 MB).
	br := bufio.NewReaderSize(tc, 16)
	idle := cmp.Or(hs.IdleTimeout, 15*time.Minute)
	for {
		if !fs.wait(c, idle) {
			return
		}
		if _, err := br.Peek(1); err != nil {
			return // closed, or idle too long
		}
		fs.busy(c)
		_ = c.raw.SetReadDeadline(time.Now().Add(cmp.Or(hs.ReadHeaderTimeout, 30*time.Second)))
		f, n, err := protocol.ReadFrameHead(br)
		if err != nil || f.Path == "" {
			return
		}
		_ = c.raw.SetReadDeadline(time.Time{}) // the handler sets the body's
		body := &io.LimitedReader{R: br, N: int64(n)}
		req := frameRequest(ctx, f, body, n, c.raw.RemoteAddr().String(), &state)
		w := &frameWriter{header: http.Header{}, conn: c.raw}
		h.ServeHTTP(w, req)
		fs.mu.Lock()
		closing := fs.closing
		fs.mu.Unlock()
		// A body the handler left unread leaves the stream mid-frame.
		last := f.Close || body.N > 0 || closing || w.header.Get("Connection") == "close"
		out, err := protocol.AppendFrame(nil, &protocol.Frame{
			Status: cmp.Or(w.status, http.StatusOK), Encoding: w.header.Get("Content-Encoding"), Close: last, Body: w.body.Bytes(),
		})
		if err != nil {
			s.log.Error("edge frame answer", "err", err, "remote", req.RemoteAddr)
			return
		}
		_ = c.raw.SetWriteDeadline(time.Now().Add(bodyDeadline(cmp.Or(s.bodyBase, bodyBaseTime), int64(len(out)), int64(len(out)))))
		if last {
			corkUntilClose(c.raw) // the FIN leaves with the answer
		}
		if _, err := tc.Write(out); err != nil || last {
			return
		}
		_ = c.raw.SetWriteDeadline(time.Time{})
	}
}

// frameRequest is the http.Request a request frame stands for.
func frameRequest(ctx context.Context, f protocol.Frame, body io.Reader, n int, remote string, state *tls.ConnectionState) *http.Request {
	h := http.Header{"Content-Type": {protocol.ContentType}}
	if f.Encoding != "" {
		h.Set("Content-Encoding", f.Encoding)
	}
	if f.Proof != "" {
		h.Set(protocol.BodyProofHeader, f.Proof)
	}
	r := &http.Request{
		Method: http.MethodPost, URL: &url.URL{Path: f.Path}, RequestURI: f.Path,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, // for handlers that look: a frame is served as HTTP/1.1 would be
		Header: h, Body: io.NopCloser(body), ContentLength: int64(n),
		Host: state.ServerName, RemoteAddr: remote, TLS: state,
	}
	return r.WithContext(ctx)
}

// frameWriter collects an answer for its frame. It lets the handler set the
// connection's read deadline for the body (http.ResponseController).
type frameWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
	conn   net.Conn
}

func (w *frameWriter) Header() http.Header { return w.header }

func (w *frameWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *frameWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.body.Len()+len(b) > protocol.MaxCompressedBody {
		return 0, fmt.Errorf("edge answer: %w", &protocol.LimitError{Limit: "MaxCompressedBody", Max: protocol.MaxCompressedBody})
	}
	return w.body.Write(b)
}

func (w *frameWriter) SetReadDeadline(t time.Time) error  { return w.conn.SetReadDeadline(t) }
func (w *frameWriter) SetWriteDeadline(t time.Time) error { return w.conn.SetWriteDeadline(t) }
