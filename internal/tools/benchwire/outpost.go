package main

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"time"

	"outpost/edgeagent"
	"outpost/edgeagent/ident"
	"outpost/edgeagent/link"
	"outpost/internal/corpus"
	"outpost/protocol"
	"outpost/snapshot"
)

// countedConn counts the bytes a connection moves: TLS records, so HTTP,
// framing, handshakes and close alerts are in, TCP/IP is not.
type countedConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c countedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// outpost is one Outpost device: the agent's own client and identity, the
// snapshot state the agent keeps, content from a capture.
type outpost struct {
	cl          *link.Client
	id          *ident.Identity
	sock, dials atomic.Int64
	cur         *snapshot.Snapshot // what the engine runs now
	base        *snapshot.Snapshot // what the server acknowledged
	seq, acked  uint64
}

func newOutpost(key protocol.EdgeKey, d50 *snapshot.Snapshot) (*outpost, error) {
	id, err := ident.Generate(fmt.Sprintf("benchwire-%d", key.EnvironmentID), key)
	if err != nil {
		return nil, err
	}
	o := &outpost{cur: d50, id: id}
	// EDGE_INSECURE_POLL=1: the server's certificate is self-signed. The
	// agent's client dials as it always does; the hook only counts.
	o.cl = link.New(key.ServerURL, true, nil, func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := link.Dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		o.dials.Add(1)
		return countedConn{Conn: c, n: &o.sock}, nil
	})
	return o, nil
}

func (o *outpost) name() string                          { return "outpost" }
func (o *outpost) socket() int64                         { return o.sock.Load() }
func (o *outpost) dialed() int64                         { return o.dials.Load() }
func (o *outpost) close()                                { o.cl.Close() }
func (o *outpost) after(gap time.Duration)               { o.cl.Idle(gap) }
func (o *outpost) holds(gap time.Duration) time.Duration { return o.cl.Holds(gap) }

// how says how the client's last connection was made.
func (o *outpost) how() string {
	return fmt.Sprintf("edge frames %s, TLS session resumed %s", yes(o.cl.Framed()), yes(o.cl.Resumed()))
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// exchange makes one sync exchange of kind k, as the agent's syncer does,
// and returns the bytes of both bodies as sent.
func (o *outpost) exchange(ctx context.Context, k kind) (int64, error) {
	req := protocol.SyncRequest{Version: protocol.Version, EnvID: o.id.Env, Include: protocol.IncludePing | protocol.IncludeCommands}
	if o.id.MAC == nil {
		req.EdgeID = o.id.EdgeID
		req.Agent = &protocol.AgentInfo{Version: edgeagent.Version, Hostname: o.cur.Engine.Hostname, Platform: "docker", OS: runtime.GOOS, Arch: runtime.GOARCH}
	}
	next := o.cur
	switch k {
	case kindFull:
		full, err := corpus.FullPush(o.cur, 0, o.seq+1)
		if err != nil {
			return 0, err
		}
		req.Snapshot = full.Snapshot
	case kindDelta:
		next, _ = corpus.StopOne(o.cur, time.Now().Unix())
		d, _, err := corpus.DeltaPush(o.base, next, 0, o.seq+1)
		if err != nil {
			return 0, err
		}
		req.Snapshot = d.Snapshot
		req.Snapshot.Base = o.acked
	}
	if req.Snapshot != nil {
		req.Include |= protocol.IncludeSnapshot
		o.seq = req.Snapshot.Seq
	}
	if err := o.id.Seal(&req, nil); err != nil {
		return 0, err
	}
	sent, _, err := protocol.WriteBody(&req)
	if err != nil {
		return 0, err
	}
	var ans protocol.SyncAnswer
	raw, err := o.cl.Post(ctx, "/edge/v1/sync", &req, &ans, func(body []byte) string { return o.id.BodyProof(req.EnvID, body) })
	if err != nil {
		return 0, fmt.Errorf("outpost %v exchange: %w", k, err)
	}
	key, env, err := o.id.VerifyAnswer(raw, &ans, req.Proof.Counter)
	if err != nil {
		return 0, fmt.Errorf("outpost %v exchange: %w", k, err)
	}
	if ans.Server != nil && env != 0 {
		o.id.Bind(key, env)
	}
	if req.Snapshot != nil {
		if ans.Snapshot == nil || ans.Snapshot.Stored != req.Snapshot.Seq {
			return 0, fmt.Errorf("outpost %v exchange: snapshot %d not acknowledged (%+v)", k, req.Snapshot.Seq, ans.Snapshot)
		}
		o.acked, o.base, o.cur = req.Snapshot.Seq, next, next
	}
	got, _, err := protocol.WriteBody(&ans)
	if err != nil {
		return 0, err
	}
	return int64(len(sent) + len(got)), nil
}
