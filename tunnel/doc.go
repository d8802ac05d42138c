// Package tunnel is standard mode's reverse tunnel. When the server wants
// live access to a device, the agent dials wss://SERVER:8000/tunnel and runs
// SSH over the WebSocket; the server then opens SSH channels on that
// connection and uses them as the dialer of an http.Transport that reaches
// the agent API, which the agent serves on each channel. No port is bound
// per tunnel, and the device needs no inbound connection.
//
// Server side: a Server is the /tunnel http.Handler and keeps one Conn per
// environment; Conn.Transport (or Conn.DialContext) reaches that agent.
// Agent side: Dial opens a tunnel and serves ClientConfig.Handler on it;
// Run keeps one up, redialing with Backoff (full jitter).
//
// # Caveats
//
//   - Who authenticates whom. The agent authenticates with its Ed25519
//     identity key (SSH public-key auth); the SSH user is the environment ID
//     in decimal, and ServerConfig.Authorize decides whether that key is the
//     one the environment is bound to. The agent authenticates the server by
//     the SHA256 fingerprint of its tunnel host key, pinned from the edge key:
//     any other key fails with ErrHostKey, whatever TLS said. TLS (wss) is
//     the outer layer only.
//   - Channels go one way. The server opens channels of type "api@outpost";
//     the agent rejects any other type and the server rejects every channel
//     the agent tries to open. Each channel is a net.Conn on both sides:
//     CloseWrite is SSH's EOF, so a half-closed stream (an exec whose stdin
//     is closed) still carries the other direction. Close frees a pending
//     Read at once, or, on a channel that never had a read deadline, when
//     the peer confirms the close (a round trip) or the connection ends.
//     DialContext ignores network and addr.
//   - Deadlines on channels: read deadlines are honoured (a pump goroutine
//     starts with the first one; before that, reads go straight to the
//     channel, and a first deadline set while such a Read waits frees it by
//     closing the channel). A Write still blocked at its deadline closes
//     the channel: an SSH channel write cannot be interrupted otherwise.
//   - Keepalives. Each side sends the global request "keepalive@outpost"
//     (reply wanted) every KeepAlive, at most one outstanding, and drops the
//     connection when nothing at all has arrived for two periods. Any byte
//     counts as a sign of life, so a slow link busy with data is not taken
//     for dead; a silent peer is dropped two periods after its last byte.
//     The two sides' periods are independent.
//   - Inactivity. The agent closes a tunnel through which no request has
//     been in progress, and no channel byte has moved, for
//     ClientConfig.Inactivity (a request in progress, however quiet, keeps
//     it up). It first sends "idle@outpost" (reply wanted) and keeps serving
//     channels; the server takes the Conn out of its table (Server.Conn
//     returns nil from then on), runs OnIdle on a goroutine of its own,
//     with c still usable (the last snapshot), and replies. The agent waits
//     for the reply at most 30s, closes, and Wait returns ErrInactive; the
//     server's OnClose says "inactive". Tunnels going idle together never
//     wait on each other.
//   - A second tunnel for an environment replaces the first, which is
//     closed (OnClose reason "replaced").
//   - Writes to the WebSocket are queued (at most 256 KiB) and sent by a
//     sender goroutine that exists only while there is something to send,
//     so SSH packets leave many to a message and an idle tunnel keeps no
//     buffer. A send error is returned by the Writes after it; bytes still
//     queued when the connection closes are dropped (SSH does not wait
//     for them either).
//   - Locks, and what they guard: Server.mu the tables of tunnels,
//     handshakes in progress and waiters; Conn.trMu the cached Transport;
//     Client.idleMu the inactivity timer; keepAlive.mu its timer; wsConn.mu
//     the write queue; stream.mu a channel's read mode and unread chunk;
//     deadline.mu a deadline's timer. None is held across network I/O or a
//     callback (Authorize, OnIdle and OnClose run with no lock held): the
//     wsConn sender writes outside wsConn.mu, and a Write that finds the
//     queue full waits on a condition, which releases it. x/crypto/ssh holds
//     its own lock while it writes a packet to the wsConn, which only
//     queues.
//   - Cost: an idle tunnel costs the server 4 goroutines (3 of them
//     x/crypto/ssh's) and about 40 KB of heap and stack (see
//     BenchmarkIdleTunnels). Throughput is bounded by x/crypto/ssh, which
//     decrypts and copies every 32 KiB packet on one goroutine: see
//     BenchmarkThroughputRatio, which measures a bare SSH channel over TCP
//     next to the tunnel and direct HTTP.
package tunnel
