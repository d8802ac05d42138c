package link

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"outpost/protocol"
)

// keepWindow is how far away the next exchange may be for the client to
// keep its connection open until then. Kept, an idle connection costs no
// byte (TCP keepalives are off on both ends), and an exchange on it about
// 270 IP bytes against about 1.3 KB for one that reconnects, resumed TLS
// handshake and close included (internal/tools/benchwire). So the window
// is bounded only by how long the path keeps an idle connection: without
// keepalives, a NAT or firewall forgets it after its idle timeout (4
// minutes on Azure's, 350 s on AWS's NAT gateway, often more elsewhere),
// and a request written to a forgotten connection is lost. Three minutes
// stays under those, and covers Portainer's 60 s defaults and a standard
// agent's polls with margin; an hourly exchange reconnects, and its
// server closes the connection with the answer.
const keepWindow = 3 * time.Minute

// Timeouts of one exchange.
const (
	handshakeTimeout = 60 * time.Second
	exchangeTimeout  = 5 * time.Minute
)

// Client speaks the edge protocol to the server over one TLS
// connection. With a server that negotiates protocol.ALPN, each exchange
// is one frame each way (protocol.Frame); with any other (servers before
// frames, or a proxy in between), HTTP/1.1 with as few headers as the
// server reads. The connection is kept while the next exchange is within
// keepWindow, and closed at once otherwise: see idle.
//
// It is not safe for concurrent use: the sync loop is its only user, one
// exchange at a time, so nothing here takes a lock.
type Client struct {
	base string // server URL, for HTTP/1.1 request lines
	addr string // host:port dialed
	tls  *tls.Config
	dial DialFunc

	conn    *tls.Conn
	raw     net.Conn // under conn: closed without a close_notify alert
	br      *bufio.Reader
	framed  bool // conn negotiated protocol.ALPN
	resumed bool // conn's handshake resumed a session
	// sent and received are the last exchange's bodies as they went on
	// the wire (compressed where they were), for Bodies.
	sent, received int
	// last is set by idle when the next exchange is beyond keepWindow: the
	// exchange before it is the connection's last, and a framed one asks
	// the server to close with its answer.
	last bool
}

// DialFunc dials the server's TCP address.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// New makes the client for serverURL; insecure skips the check of the
// server's certificate (EDGE_INSECURE_POLL=1). cert, if not nil, is the
// device's client certificate for a server that requires one
// (--client-ca). Go sends it only when the server's list of acceptable
// CAs names its issuer; otherwise the server answers
// client_certificate_required. dial, if not nil, replaces Dial (tests and
// tools count bytes through it, the fleet simulator picks a source
// address with DialFrom).
func New(serverURL string, insecure bool, cert *tls.Certificate, dial DialFunc) *Client {
	if dial == nil {
		dial = Dial
	}
	host, addr := "", ""
	if u, err := url.Parse(serverURL); err == nil {
		host, addr = u.Hostname(), u.Host
		if u.Port() == "" {
			addr = net.JoinHostPort(host, "443")
		}
	}
	tc := &tls.Config{
		ServerName:         host,
		InsecureSkipVerify: insecure, //nolint:gosec // EDGE_INSECURE_POLL=1: the operator chose a self-signed server
		// X25519 alone: Go's default adds a post-quantum key share of
		// over 1 KB to each handshake, paid for on metered links.
		CurvePreferences: []tls.CurveID{tls.X25519},
		// A reconnect resumes the session: no certificate, no signature.
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
		// TLS 1.3 only, until a server refuses it (connect): 28 bytes
		// less in each ClientHello than when it offers TLS 1.2 too.
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{protocol.ALPN, "http/1.1"},
	}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &Client{base: serverURL, addr: addr, tls: tc, dial: dial}
}

// Dial dials the server as the agent does: without TCP keepalives (an
// idle metered link would pay for each probe, and the client keeps no
// connection past keepWindow), and with quiet ACKs before and after the
// connection is made.
func Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return DialFrom(nil)(ctx, network, addr)
}

// DialFrom is Dial from the local address local (nil: the system's
// choice).
func DialFrom(local net.Addr) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dial(ctx, local, network, addr)
	}
}

func dial(ctx context.Context, local net.Addr, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: -1, LocalAddr: local,
		Control: func(_, _ string, c syscall.RawConn) error { quietAcks(c); return nil }}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	// Connecting turned quick ACKs back on: off again, so the ACK of the
	// server's handshake flight leaves with the agent's.
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			quietAcks(rc)
		}
	}
	return c, nil
}

// Post sends req to path, decodes the answer into ans and returns the
// answer's CBOR as received, which its tag covers. A refusal by the server
// comes back as *protocol.Error.
//
// A body whose CBOR is larger than protocol.MaxUnprovedBody goes with the
// body proof prove gives for it (none if prove is nil or gives ""): the
// server inflates nothing larger from a sender it does not know.
func (c *Client) Post(ctx context.Context, path string, req, ans any, prove func(body []byte) string) ([]byte, error) {
	body, enc, rawLen, err := protocol.EncodeBody(req)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	c.sent, c.received = len(body), 0
	var proof string
	if rawLen > protocol.MaxUnprovedBody && prove != nil {
		proof = prove(body)
	}
	ctx, cancel := context.WithTimeout(ctx, exchangeTimeout)
	defer cancel()
	if err := c.connect(ctx); err != nil {
		return nil, fmt.Errorf("connect to %s: %w", c.addr, err)
	}
	// Cancelling ctx unblocks the exchange: the connection is dropped.
	conn := c.raw
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var status int
	var renc string
	var rb []byte
	if c.framed {
		status, renc, rb, err = c.exchangeFrame(path, enc, proof, body)
	} else {
		status, renc, rb, err = c.exchangeHTTP(ctx, path, enc, proof, body)
	}
	if err != nil {
		c.drop()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
		return nil, err
	}
	c.received = len(rb)
	if stop() && c.raw == conn {
		_ = conn.SetDeadline(time.Time{}) // kept for the next exchange
	}
	if status != http.StatusOK {
		var pe protocol.Error
		if err := protocol.ReadBody(rb, renc, &pe); err != nil || pe.Code == "" {
			return nil, &StatusError{Code: status}
		}
		return nil, &pe
	}
	raw, err := protocol.Inflate(rb, renc)
	if err == nil {
		err = protocol.Unmarshal(raw, ans)
	}
	if err != nil {
		return nil, fmt.Errorf("decode answer: %w", err)
	}
	return raw, nil
}

// StatusError is a refusal without the protocol's error body (a proxy's,
// or a server's before it read the request).
type StatusError struct{ Code int }

func (e *StatusError) Error() string {
	return fmt.Sprintf("server answered %d %s", e.Code, http.StatusText(e.Code))
}

// exchangeFrame sends one request frame and reads its answer frame. A
// request that is the connection's last asks the server to close with its
// answer, so the server's FIN leaves with it.
func (c *Client) exchangeFrame(path, enc, proof string, body []byte) (status int, renc string, rb []byte, err error) {
	out, err := protocol.AppendFrame(nil, &protocol.Frame{Path: path, Encoding: enc, Proof: proof, Close: c.last, Body: body})
	if err != nil {
		return 0, "", nil, err
	}
	if _, err := c.conn.Write(out); err != nil {
		return 0, "", nil, fmt.Errorf("send: %w", err)
	}
	f, err := protocol.ReadFrame(c.br)
	if err != nil {
		return 0, "", nil, fmt.Errorf("read answer: %w", err)
	}
	if f.Path != "" {
		return 0, "", nil, fmt.Errorf("read answer: %w: a request where an answer was due", protocol.ErrFrame)
	}
	if f.Close || c.last {
		c.drop()
	}
	return f.Status, f.Encoding, f.Body, nil
}

// exchangeHTTP sends one HTTP/1.1 request and reads its answer: the
// request line, Host, Content-Length, Content-Type, and Content-Encoding
// or the body proof when there is one.
func (c *Client) exchangeHTTP(ctx context.Context, path, enc, proof string, body []byte) (status int, renc string, rb []byte, err error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, "", nil, err
	}
	hr.Header.Set("Content-Type", protocol.ContentType)
	hr.Header.Set("User-Agent", "") // not sent
	if enc != "" {
		hr.Header.Set("Content-Encoding", enc)
	}
	if proof != "" {
		hr.Header.Set(protocol.BodyProofHeader, proof)
	}
	bw := bufio.NewWriter(c.conn)
	if err := hr.Write(bw); err != nil {
		return 0, "", nil, fmt.Errorf("send: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return 0, "", nil, fmt.Errorf("send: %w", err)
	}
	resp, err := http.ReadResponse(c.br, hr)
	if err != nil {
		return 0, "", nil, fmt.Errorf("read answer: %w", err)
	}
	defer resp.Body.Close()
	rb, err = io.ReadAll(io.LimitReader(resp.Body, protocol.MaxCompressedBody+1))
	if err != nil {
		return 0, "", nil, fmt.Errorf("read answer: %w", err)
	}
	if len(rb) > protocol.MaxCompressedBody {
		return 0, "", nil, fmt.Errorf("read answer: %w", &protocol.LimitError{Limit: "MaxCompressedBody", Max: protocol.MaxCompressedBody})
	}
	if resp.Close || c.last {
		c.drop()
	}
	return resp.StatusCode, resp.Header.Get("Content-Encoding"), rb, nil
}

// connect makes sure there is a live connection: the kept one, unless the
// server closed it meanwhile, or a new one.
func (c *Client) connect(ctx context.Context) error {
	if c.conn != nil && c.alive() {
		return nil
	}
	c.drop()
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	err := c.handshake(ctx)
	if err != nil && c.tls.MinVersion == tls.VersionTLS13 && refusedVersion(err) {
		// A server, or a proxy in front of it, that speaks TLS 1.2 only.
		c.tls = c.tls.Clone()
		c.tls.MinVersion = tls.VersionTLS12
		err = c.handshake(ctx)
	}
	return err
}

// handshake dials and makes the TLS connection.
func (c *Client) handshake(ctx context.Context) error {
	raw, err := c.dial(ctx, "tcp", c.addr)
	if err != nil {
		return err
	}
	hc := &heldConn{Conn: raw, handshaking: true}
	tc := tls.Client(hc, c.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return err
	}
	hc.handshaking = false
	st := tc.ConnectionState()
	c.conn, c.raw, c.br = tc, raw, bufio.NewReaderSize(tc, 4<<10)
	c.framed, c.resumed = st.NegotiatedProtocol == protocol.ALPN, st.DidResume
	return nil
}

// refusedVersion reports whether a handshake failed on the TLS version: the
// server answered with a protocol_version alert, or chose a version the
// client did not offer. crypto/tls says so only in its error texts.
func refusedVersion(err error) bool {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" {
		return strings.Contains(oe.Err.Error(), "protocol version")
	}
	return strings.Contains(err.Error(), "unsupported protocol version")
}

// alive reports whether the kept connection is still open: the server
// closes one it has held idle past its idle timeout, and a request written
// to it would be lost. It reads, waiting a millisecond at most (a deadline
// already past would not even read); a session ticket that came in
// meanwhile is taken in by the TLS layer.
func (c *Client) alive() bool {
	_ = c.conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, err := c.br.Peek(1)
	_ = c.conn.SetReadDeadline(time.Time{})
	// Nothing to read is what a live idle connection says; anything else,
	// data included (nothing is due), means it cannot be used.
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// drop closes the connection, if any, without a TLS close_notify: the
// frames and HTTP's Content-Length say where each message ends, and the
// alert would be one more packet each way on a metered link.
func (c *Client) drop() {
	if c.raw != nil {
		_ = c.raw.Close()
	}
	c.conn, c.raw, c.br = nil, nil, nil
}

// Idle is told, once an exchange is over, how long until the next: a
// connection is closed at once when that is beyond keepWindow, and
// otherwise kept until then.
func (c *Client) Idle(gap time.Duration) {
	c.last = gap > keepWindow
	if c.last {
		c.drop()
	}
}

// Holds is how long the client keeps its connection idle when the next
// exchange is gap away.
func (c *Client) Holds(gap time.Duration) time.Duration {
	if gap > keepWindow {
		return 0
	}
	return gap
}

// Close closes the connection, if any.
func (c *Client) Close() { c.drop() }

// Connected reports whether the client holds a connection now.
func (c *Client) Connected() bool { return c.conn != nil }

// Bodies is what the last exchange's request and answer bodies took on the
// wire, compressed where they were (the answer's 0 if none came).
func (c *Client) Bodies() (sent, received int) { return c.sent, c.received }

// Framed and Resumed say how the last connection was made: framed
// (protocol.ALPN), and by a resumed TLS session.
func (c *Client) Framed() bool  { return c.framed }
func (c *Client) Resumed() bool { return c.resumed }

// heldConn holds back the client's last handshake flight (its Finished)
// until the first request, so both leave in one TCP segment instead of
// two. It writes what it holds before any read, so the handshake never
// waits on a flight it holds.
type heldConn struct {
	net.Conn
	handshaking bool // set until the handshake is over
	heard       bool // the server has spoken: later handshake writes are held
	held        []byte
}

func (h *heldConn) Read(p []byte) (int, error) {
	if err := h.flush(); err != nil {
		return 0, err
	}
	n, err := h.Conn.Read(p)
	if n > 0 && h.handshaking {
		h.heard = true
	}
	return n, err
}

func (h *heldConn) Write(p []byte) (int, error) {
	if h.handshaking && h.heard {
		h.held = append(h.held, p...)
		return len(p), nil
	}
	if len(h.held) == 0 {
		return h.Conn.Write(p)
	}
	b := append(h.held, p...)
	h.held = nil
	if _, err := h.Conn.Write(b); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (h *heldConn) flush() error {
	if len(h.held) == 0 {
		return nil
	}
	b := h.held
	h.held = nil
	_, err := h.Conn.Write(b)
	return err
}
