package edgeagent

import (
	"context"
	"net"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"outpost/protocol"
	"outpost/snapshot"
)

// countingConn counts every byte that crosses the TCP connection: TLS records
// and HTTP included.
type countingConn struct {
	net.Conn
	in, out *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

// TestWireBytesPerIdlePing measures what an idle ping costs on the wire once
// the connection is up: the body plus HTTP/1.1 with the agent's minimal
// headers, inside TLS records. It guards against header or framing creep.
func TestWireBytesPerIdlePing(t *testing.T) {
	srv := newScriptedServer(t, ackAll)
	hs := httptest.NewTLSServer(srv)
	defer hs.Close()
	var in, out atomic.Int64
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: c, in: &in, out: &out}, nil
	}
	s := newTestSyncer(t, srv, hs.URL, t.TempDir(), &fakeCollector{d: &snapshot.Snapshot{}})
	s.cl = newClient(hs.URL, true, nil, dial)
	ctx := context.Background()
	if err := s.exchange(ctx, protocol.IncludePing); err != nil {
		t.Fatal(err)
	}
	firstIn, firstOut := in.Load(), out.Load()
	const pings = 20
	for range pings {
		if err := s.exchange(ctx, protocol.IncludePing|protocol.IncludeCommands); err != nil {
			t.Fatal(err)
		}
	}
	up, down := (out.Load()-firstOut)/pings, (in.Load()-firstIn)/pings
	per := up + down
	t.Logf("first exchange (TLS handshake included, test certificate): %d B; each idle ping after it: %d B (%d up, %d down)",
		firstIn+firstOut, per, up, down)
	if per > 400 {
		t.Errorf("an idle ping costs %d B on a kept-alive connection; it cost under 400 B when this test was written", per)
	}
}
