package server

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
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
// negotiate them. Call it before srv serves. Call close on what it returns
// if srv's Shutdown times out, before what the handlers use goes away.
func (s *Server) serveFrames(srv *http.Server) *frameConns {
	fc := &frameConns{conns: map[*frameConn]struct{}{}, log: s.log}
	if srv.TLSNextProto == nil {
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	srv.TLSNextProto[protocol.ALPN] = func(hs *http.Server, tc *tls.Conn, h http.Handler) {
		s.serveFrameConn(hs, fc, tc, h)
	}
	// net/http leaves a TLSNextProto connection to its handler: Shutdown
	// would wait for one held idle by its agent.
	srv.RegisterOnShutdown(fc.shutdown)
	return fc
}

// frameConns are the open frame connections, for Shutdown.
type frameConns struct {
	mu      sync.Mutex // guards conns, closing and each frameConn.busy; held for no network I/O
	conns   map[*frameConn]struct{}
	closing bool
	served  sync.WaitGroup // serveFrameConn calls; Add only under mu while !closing
	log     *slog.Logger
}

// frameConn is one connection, and whether it is serving a frame.
type frameConn struct {
	raw  net.Conn
	busy bool // in its handler or its answer; guarded by frameConns.mu
}

// open adds c, unless the server is shutting down (false).
func (fs *frameConns) open(c *frameConn) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.closing {
		return false
	}
	fs.conns[c] = struct{}{}
	fs.served.Add(1)
	return true
}

// remove takes c out once it is done.
func (fs *frameConns) remove(c *frameConn) {
	fs.mu.Lock()
	delete(fs.conns, c)
	fs.mu.Unlock()
	fs.served.Done()
}

// wait marks c idle with a read deadline of timeout for what comes next on
// it (the next frame, or the rest of its head), unless the server is
// shutting down (false). The deadline is set under the lock shutdown takes:
// shutdown's own, immediate one is never overwritten.
func (fs *frameConns) wait(c *frameConn, timeout time.Duration) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.closing {
		return false
	}
	c.busy = false
	_ = c.raw.SetReadDeadline(time.Now().Add(timeout))
	return true
}

// serve marks c busy once a frame's head is in, unless the server is
// shutting down (false): the frame is then not served, as net/http does
// not serve a request whose head it was reading at Shutdown.
func (fs *frameConns) serve(c *frameConn) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.closing {
		return false
	}
	c.busy = true
	_ = c.raw.SetReadDeadline(time.Time{}) // the handler sets the body's
	return true
}

// shutdown ends the connections that are not serving a frame now, idle or
// reading a frame's head, and the busy ones after their answer.
func (fs *frameConns) shutdown() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.closing = true
	for c := range fs.conns {
		if !c.busy {
			_ = c.raw.SetReadDeadline(time.Now())
		}
	}
}

// close ends every connection, busy or not, and waits up to wait for their
// handlers to return: after a Shutdown that timed out, no frame is served
// once the store is closed.
func (fs *frameConns) close(wait time.Duration) {
	fs.mu.Lock()
	fs.closing = true
	for c := range fs.conns {
		_ = c.raw.Close() // a handler's body read fails now; its answer is not written
	}
	n := len(fs.conns)
	fs.mu.Unlock()
	done := make(chan struct{})
	go func() { fs.served.Wait(); close(done) }()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		fs.log.Error("edge frames: handlers still running after their connections were closed", "connections", n, "waited", wait)
	}
}

// Bounds on a body a handler left unread (refused before its end): the
// server reads and discards it for up to frameDrainTime, so the stream is
// in sync again and the answer follows. A body that does not arrive by then
// gets the answer and the server's FIN, and what still comes is read and
// discarded for frameLingerTime before the close: closing a socket with
// unread data makes Linux send a RST in place of what it has not sent yet
// (a corked answer), and the agent then reads "connection reset" instead of
// the answer (net/http's closeWriteAndWait, for the same reason).
const (
	frameDrainTime  = 2 * time.Second
	frameLingerTime = 500 * time.Millisecond
)

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
	// No TCP keepalives on a frame connection: only agents speak frames,
	// and a device on a metered link would pay for every probe on the
	// connection it keeps between exchanges. The server still drops a dead
	// one, after its IdleTimeout. Browsers and HTTP/1.1 agents keep the
	// listener's keepalives.
	if tcp, ok := c.raw.(*net.TCPConn); ok {
		_ = tcp.SetKeepAlive(false)
	}
	if !fs.open(c) {
		return
	}
	defer fs.remove(c)
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
		// Reading a head is still idle for shutdown, as net/http's
		// reading of a request's head is.
		if !fs.wait(c, cmp.Or(hs.ReadHeaderTimeout, 30*time.Second)) {
			return
		}
		f, n, err := protocol.ReadFrameHead(br)
		if err != nil || f.Path == "" || !fs.serve(c) {
			return
		}
		body := &io.LimitedReader{R: br, N: int64(n)}
		req := frameRequest(ctx, f, body, n, c.raw.RemoteAddr().String(), &state)
		w := &frameWriter{header: http.Header{}, conn: c.raw}
		h.ServeHTTP(w, req)
		// A body the handler left unread leaves the stream mid-frame.
		inSync := body.N == 0 || drain(c.raw, body)
		fs.mu.Lock()
		closing := fs.closing
		fs.mu.Unlock()
		last := !inSync || f.Close || closing || w.header.Get("Connection") == "close"
		out, err := protocol.AppendFrame(nil, &protocol.Frame{
			Status: cmp.Or(w.status, http.StatusOK), Encoding: w.header.Get("Content-Encoding"), Close: last, Body: w.body.Bytes(),
		})
		if err != nil {
			s.log.Error("edge frame answer", "err", err, "remote", req.RemoteAddr)
			return
		}
		_ = c.raw.SetWriteDeadline(time.Now().Add(bodyDeadline(cmp.Or(s.bodyBase, bodyBaseTime), int64(len(out)), int64(len(out)))))
		if last && inSync {
			corkUntilClose(c.raw) // the FIN leaves with the answer
		}
		if _, err := tc.Write(out); err != nil {
			return
		}
		if !inSync {
			closeWriteAndLinger(c.raw)
			return
		}
		if last {
			return
		}
		_ = c.raw.SetWriteDeadline(time.Time{})
	}
}

// drain reads and discards the rest of body, for up to frameDrainTime, and
// says whether it all came.
func drain(raw net.Conn, body *io.LimitedReader) bool {
	_ = raw.SetReadDeadline(time.Now().Add(frameDrainTime))
	_, _ = io.Copy(io.Discard, body)
	return body.N == 0
}

// closeWriteAndLinger sends the server's FIN after its answer and reads
// and discards what the agent still sends, for up to frameLingerTime, so
// that the close finds no unread data and sends no RST.
func closeWriteAndLinger(raw net.Conn) {
	if tcp, ok := raw.(*net.TCPConn); ok {
		_ = tcp.CloseWrite()
	}
	_ = raw.SetReadDeadline(time.Now().Add(frameLingerTime))
	_, _ = io.Copy(io.Discard, raw)
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
