package sim

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"outpost/protocol"
)

// countedConn counts the bytes a connection moves: TLS records, so HTTP
// headers, TLS framing and handshakes are in, TCP/IP is not.
type countedConn struct {
	net.Conn
	in, out *atomic.Int64
}

func (c countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c countedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

// link is one device's HTTPS client: one kept-alive TLS connection from its
// own loopback source address, made as the agent makes its own (X25519
// only, a session cache, no compression header, 10 minutes idle).
type link struct {
	base    string
	http    *http.Client
	in, out atomic.Int64 // socket bytes, all connections
	dials   atomic.Int64
}

func newLink(base string, src net.IP) *link {
	l := &link{base: base}
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: src}}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			l.dials.Add(1)
			return countedConn{Conn: c, in: &l.in, out: &l.out}, nil
		},
		TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, //nolint:gosec // the server's self-signed certificate; answers are proved by their tags
			CurvePreferences:   []tls.CurveID{tls.X25519},
			ClientSessionCache: tls.NewLRUClientSessionCache(1),
			MinVersion:         tls.VersionTLS12,
		},
		DisableCompression:  true,
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		IdleConnTimeout:     10 * time.Minute,
		TLSHandshakeTimeout: 30 * time.Second,
	}
	l.http = &http.Client{Transport: tr, Timeout: time.Minute}
	return l
}

func (l *link) close() { l.http.CloseIdleConnections() }

// wireBytes is what one exchange moved: its bodies as sent, and the bytes
// on the socket (TLS records), handshake included when it dialed.
type wireBytes struct {
	body, socket int64
}

// post sends req to path and decodes the answer into ans, returning the
// answer's CBOR as received (its tag covers it). A refusal comes back as
// *protocol.Error. It is the agent's edgeagent client's exchange: the body
// proof goes only with a body whose CBOR is over protocol.MaxUnprovedBody.
func (l *link) post(ctx context.Context, path string, req, ans any, prove func(body []byte) string) (raw []byte, wb wireBytes, err error) {
	body, enc, rawLen, err := protocol.EncodeBody(req)
	if err != nil {
		return nil, wb, fmt.Errorf("encode: %w", err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, l.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, wb, err
	}
	hr.Header.Set("Content-Type", protocol.ContentType)
	hr.Header.Set("User-Agent", "") // not sent, as the agent
	if enc != "" {
		hr.Header.Set("Content-Encoding", enc)
	}
	if rawLen > protocol.MaxUnprovedBody && prove != nil {
		if v := prove(body); v != "" {
			hr.Header.Set(protocol.BodyProofHeader, v)
		}
	}
	// One exchange at a time per device: what the socket moved meanwhile
	// is this exchange's.
	in0, out0 := l.in.Load(), l.out.Load()
	defer func() { wb.socket = l.in.Load() - in0 + l.out.Load() - out0 }()
	resp, err := l.http.Do(hr)
	if err != nil {
		return nil, wb, err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, protocol.MaxCompressedBody+1))
	wb.body = int64(len(body) + len(rb))
	if err != nil {
		return nil, wb, fmt.Errorf("read answer: %w", err)
	}
	renc := resp.Header.Get("Content-Encoding")
	if resp.StatusCode != http.StatusOK {
		var pe protocol.Error
		if err := protocol.ReadBody(rb, renc, &pe); err != nil || pe.Code == "" {
			return nil, wb, &statusError{resp.StatusCode}
		}
		return nil, wb, &pe
	}
	raw, err = protocol.Inflate(rb, renc)
	if err == nil {
		err = protocol.Unmarshal(raw, ans)
	}
	if err != nil {
		return nil, wb, fmt.Errorf("decode answer: %w", err)
	}
	return raw, wb, nil
}

// statusError is an HTTP refusal without a protocol error body.
type statusError struct{ code int }

func (e *statusError) Error() string { return fmt.Sprintf("server answered %d", e.code) }
