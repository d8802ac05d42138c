package sim

import (
	"context"
	"net"
	"sync/atomic"

	edgelink "outpost/edgeagent/link"
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

// link is one device's edge client: the agent's own (edgeagent/link), from
// the device's loopback source address, with its socket bytes counted.
type link struct {
	cl      *edgelink.Client
	in, out atomic.Int64 // socket bytes, all connections
	dials   atomic.Int64
}

func newLink(base string, src net.IP) *link {
	l := &link{}
	dial := edgelink.DialFrom(&net.TCPAddr{IP: src})
	// EDGE_INSECURE_POLL=1: the server's certificate is self-signed;
	// answers are proved by their tags.
	l.cl = edgelink.New(base, true, nil, func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		l.dials.Add(1)
		return countedConn{Conn: c, in: &l.in, out: &l.out}, nil
	})
	return l
}

func (l *link) close() { l.cl.Close() }

// wireBytes is what one exchange moved: its bodies as sent, and the bytes
// on the socket (TLS records), handshake included when it dialed.
type wireBytes struct {
	body, socket int64
}

// post makes one exchange with the agent's client and returns the
// answer's CBOR as received (its tag covers it) and what it moved. A
// refusal comes back as *protocol.Error, or *edgelink.StatusError without
// the protocol's body.
func (l *link) post(ctx context.Context, path string, req, ans any, prove func(body []byte) string) (raw []byte, wb wireBytes, err error) {
	// One exchange at a time per device: what the socket moved meanwhile
	// is this exchange's.
	in0, out0 := l.in.Load(), l.out.Load()
	raw, err = l.cl.Post(ctx, path, req, ans, prove)
	wb.socket = l.in.Load() - in0 + l.out.Load() - out0
	sent, received := l.cl.Bodies()
	wb.body = int64(sent + received)
	return raw, wb, err
}
