package tunnel

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/ssh"
)

// idleRequest is the global request the agent sends when it is about to
// close for inactivity. The server replies once its OnIdle has returned.
const idleRequest = "idle@outpost"

// permEnv is where the SSH handshake passes the authorized environment ID.
const permEnv = "outpost-env"

// ServerConfig configures the server end of the tunnels.
type ServerConfig struct {
	// HostKey is the server's tunnel host key. Agents pin its SHA256
	// fingerprint (it is in the edge key).
	HostKey ssh.Signer

	// Authorize decides whether key may open a tunnel for user, the
	// environment ID (decimal) the agent claims. It returns that
	// environment's ID when key is the identity key the environment is
	// bound to, and an error otherwise (unknown or untrusted environment,
	// another key). It is called once per connection attempt.
	Authorize func(user string, key ssh.PublicKey) (id uint64, err error)

	// KeepAlive is the keepalive period (0 = 20s). An agent that sends
	// nothing for two periods, not even a keepalive answer, is dropped.
	KeepAlive time.Duration

	// OnClose, if set, is called once per tunnel after it has ended, with
	// why: "replaced", "inactive", "keepalive timeout", "server closed",
	// "closed by the server" or "agent disconnected: ...". It must not
	// block for long: it runs on the tunnel's goroutine.
	OnClose func(id uint64, reason string)

	// OnIdle, if set, is called when the agent announces that it closes the
	// tunnel for inactivity, before the connection goes: c still works, so
	// the server can take a last snapshot through it. The agent waits for
	// OnIdle to return, at most 30s; ctx ends then, or when the connection
	// is lost. Each tunnel's OnIdle runs on its own goroutine.
	OnIdle func(ctx context.Context, c *Conn)

	// Log receives connection events; nil discards them.
	Log *slog.Logger
}

// Server is the server end: an http.Handler for the /tunnel endpoint that
// keeps at most one tunnel per environment.
type Server struct {
	cfg  ServerConfig
	ssh  *ssh.ServerConfig
	up   websocket.Upgrader
	done chan struct{} // closed by Close

	// mu guards the maps and closed. It is never held across network I/O
	// or a callback: connections are closed, and OnClose called, after it
	// is released.
	mu      sync.Mutex
	conns   map[uint64]*Conn     // the tunnel of each environment
	live    map[*Conn]struct{}   // every tunnel not yet ended, listed or not
	pending map[*wsConn]struct{} // connections still in their handshake
	waiters map[uint64]*waiter
	closed  bool

	wg sync.WaitGroup // ServeHTTP calls and tunnels in progress
}

// waiter wakes the Wait calls for one environment when its tunnel comes up.
type waiter struct {
	up chan struct{}
	n  int // Wait calls using it
}

// NewServer returns a server for cfg. It panics when HostKey or Authorize
// is missing, or KeepAlive is negative: those are wiring mistakes.
func NewServer(cfg ServerConfig) *Server {
	if err := cfg.check(); err != nil {
		panic(err)
	}
	s := &Server{
		cfg:     cfg.withDefaults(),
		done:    make(chan struct{}),
		conns:   make(map[uint64]*Conn),
		live:    make(map[*Conn]struct{}),
		pending: make(map[*wsConn]struct{}),
		waiters: make(map[uint64]*waiter),
	}
	s.ssh = &ssh.ServerConfig{
		ServerVersion:     "SSH-2.0-Outpost",
		MaxAuthTries:      3,
		PublicKeyCallback: s.authorize,
	}
	s.ssh.AddHostKey(cfg.HostKey)
	s.up = websocket.Upgrader{
		HandshakeTimeout: handshakeTimeout,
		// ReadBufferSize 0 reuses the 4 KiB reader the HTTP server already
		// made: SSH reads whole packets, which bypass a small buffer.
		WriteBufferSize:   wsBufferSize,
		WriteBufferPool:   &sync.Pool{},
		EnableCompression: false, // SSH traffic is encrypted: nothing to gain
	}
	return s
}

func (s *Server) authorize(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	id, err := s.cfg.Authorize(meta.User(), key)
	if err != nil {
		s.cfg.Log.Info("tunnel refused", "user", meta.User(), "key", ssh.FingerprintSHA256(key),
			"remote", meta.RemoteAddr().String(), "err", err)
		return nil, err
	}
	return &ssh.Permissions{Extensions: map[string]string{permEnv: strconv.FormatUint(id, 10)}}, nil
}

// ServeHTTP is the /tunnel endpoint: it upgrades to a WebSocket, runs the
// SSH server handshake over it and, once the agent is authorized, returns,
// leaving the tunnel to a goroutine of its own (so the HTTP server's state
// for the request is freed). A tunnel for an environment that already has
// one replaces it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "tunnel server closed", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1) // done here, or by run once the tunnel is up
	s.mu.Unlock()
	up := false
	defer func() {
		if !up {
			s.wg.Done()
		}
	}()

	ws, err := s.up.Upgrade(w, r, nil)
	if err != nil {
		s.cfg.Log.Debug("tunnel upgrade", "remote", r.RemoteAddr, "err", err)
		return // Upgrade has answered
	}
	nc := newWSConn(ws)
	sc, chans, reqs, err := s.handshake(nc)
	if err != nil {
		s.cfg.Log.Info("tunnel handshake", "remote", r.RemoteAddr, "err", err)
		return
	}
	id, _ := strconv.ParseUint(sc.Permissions.Extensions[permEnv], 10, 64)
	ctx, cancel := context.WithCancel(context.Background())
	c := &Conn{id: id, ssh: sc, ws: nc, ctx: ctx, cancel: cancel}
	old, ok := s.register(c)
	if !ok {
		c.close("server closed") // Close ran during the handshake
		return
	}
	if old != nil {
		old.close("replaced")
	}
	s.cfg.Log.Info("tunnel up", "env", id, "remote", r.RemoteAddr)
	up = true
	go s.run(c, chans, reqs)
}

// run serves a tunnel until it ends, then reports it.
func (s *Server) run(c *Conn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	defer s.wg.Done()
	ka := startKeepAlive(s.cfg.KeepAlive, c.ssh, c.ws, func() { c.close("keepalive timeout") })

	s.serve(c, chans, reqs)

	ka.stop()
	reason := "agent disconnected"
	if c.idle.Load() {
		reason = "inactive"
	} else if err := c.ssh.Wait(); err != nil {
		reason += ": " + err.Error()
	}
	c.close(reason)
	c.idles.Wait()
	s.unregister(c)
	s.mu.Lock()
	delete(s.live, c)
	s.mu.Unlock()
	s.cfg.Log.Info("tunnel down", "env", c.id, "reason", c.reason)
	if s.cfg.OnClose != nil {
		s.cfg.OnClose(c.id, c.reason)
	}
}

// handshake runs the SSH server handshake, bounded in time and ended early
// by Close.
func (s *Server) handshake(nc *wsConn) (*ssh.ServerConn, <-chan ssh.NewChannel, <-chan *ssh.Request, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = nc.Close()
		return nil, nil, nil, ErrClosed
	}
	s.pending[nc] = struct{}{}
	s.mu.Unlock()
	t := time.AfterFunc(handshakeTimeout, func() { _ = nc.Close() })
	sc, chans, reqs, err := ssh.NewServerConn(nc, s.ssh)
	late := !t.Stop()
	s.mu.Lock()
	delete(s.pending, nc)
	s.mu.Unlock()
	switch {
	case err != nil && late:
		return nil, nil, nil, fmt.Errorf("ssh handshake: not done after %v: %w", handshakeTimeout, err)
	case err != nil:
		_ = nc.Close()
		return nil, nil, nil, fmt.Errorf("ssh handshake: %w", err)
	case late:
		_ = sc.Close()
		return nil, nil, nil, fmt.Errorf("ssh handshake: not done after %v", handshakeTimeout)
	}
	return sc, chans, reqs, nil
}

// serve answers the agent's requests until the connection ends. It writes
// to the network (replies) on this goroutine only; the keepalive timer,
// which can close a stuck connection, runs elsewhere.
func (s *Server) serve(c *Conn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	for chans != nil || reqs != nil {
		select {
		case nc, ok := <-chans:
			if !ok {
				chans = nil
				continue
			}
			_ = nc.Reject(ssh.Prohibited, "the server serves no channels")
		case r, ok := <-reqs:
			if !ok {
				reqs = nil
				continue
			}
			switch r.Type {
			case keepAliveRequest:
				_ = r.Reply(true, nil)
			case idleRequest:
				s.idle(c, r)
			default:
				if r.WantReply {
					_ = r.Reply(false, nil)
				}
			}
		}
	}
}

// idle handles the agent's idle announcement: the tunnel leaves the map (a
// new user of the environment waits for a fresh tunnel), OnIdle runs on its
// own goroutine so tunnels going idle together do not wait on each other,
// then the reply lets the agent close.
func (s *Server) idle(c *Conn, r *ssh.Request) {
	if !c.idle.CompareAndSwap(false, true) {
		_ = r.Reply(true, nil)
		return
	}
	s.unregister(c)
	s.cfg.Log.Info("tunnel idle", "env", c.id)
	c.idles.Add(1)
	go func() {
		defer c.idles.Done()
		if s.cfg.OnIdle != nil {
			ctx, cancel := context.WithTimeout(c.ctx, idleWait)
			s.cfg.OnIdle(ctx, c)
			cancel()
		}
		_ = r.Reply(true, nil)
	}()
}

// register makes c the environment's tunnel and returns the one it
// replaces; ok is false when the server is closed.
func (s *Server) register(c *Conn) (old *Conn, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false
	}
	old = s.conns[c.id]
	s.conns[c.id] = c
	s.live[c] = struct{}{}
	if w := s.waiters[c.id]; w != nil {
		close(w.up)
		delete(s.waiters, c.id)
	}
	return old, true
}

// unregister removes c, unless another tunnel has replaced it.
func (s *Server) unregister(c *Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns[c.id] == c {
		delete(s.conns, c.id)
	}
}

// Conn returns the tunnel of environment id, or nil when it has none (or
// its tunnel is closing for inactivity).
func (s *Server) Conn(id uint64) *Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[id]
}

// Wait returns the tunnel of environment id, waiting for it to come up if
// needed, until ctx ends or the server is closed.
func (s *Server) Wait(ctx context.Context, id uint64) (*Conn, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, fmt.Errorf("tunnel wait %d: %w", id, ErrClosed)
		}
		if c := s.conns[id]; c != nil {
			s.mu.Unlock()
			return c, nil
		}
		w := s.waiters[id]
		if w == nil {
			w = &waiter{up: make(chan struct{})}
			s.waiters[id] = w
		}
		w.n++
		s.mu.Unlock()

		select {
		case <-w.up:
		case <-s.done:
		case <-ctx.Done():
			s.mu.Lock()
			if w.n--; w.n == 0 && s.waiters[id] == w {
				delete(s.waiters, id)
			}
			s.mu.Unlock()
			return nil, fmt.Errorf("tunnel wait %d: %w", id, ctx.Err())
		}
	}
}

// Count returns how many environments have a tunnel up.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close closes every tunnel and handshake in progress, refuses new ones and
// returns when they have all ended (OnClose included).
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	conns := make([]*Conn, 0, len(s.live))
	for c := range s.live {
		conns = append(conns, c)
	}
	pending := make([]*wsConn, 0, len(s.pending))
	for nc := range s.pending {
		pending = append(pending, nc)
	}
	s.mu.Unlock()

	for _, c := range conns {
		c.close("server closed")
	}
	for _, nc := range pending {
		_ = nc.Close()
	}
	s.wg.Wait()
	return nil
}

// Conn is one agent's tunnel, seen from the server.
type Conn struct {
	id  uint64
	ssh *ssh.ServerConn
	ws  *wsConn

	// ctx ends when the tunnel does; reason says why, written once before
	// cancel (so readable by whoever saw ctx end).
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	reason string

	idle  atomic.Bool    // the agent announced it closes for inactivity
	idles sync.WaitGroup // OnIdle calls in progress

	trMu sync.Mutex // guards tr
	tr   *http.Transport
}

// ID returns the environment ID the tunnel belongs to.
func (c *Conn) ID() uint64 { return c.id }

// Done returns a channel closed when the tunnel has ended.
func (c *Conn) Done() <-chan struct{} { return c.ctx.Done() }

// Close ends the tunnel from the server side.
func (c *Conn) Close() error {
	c.close("closed by the server")
	return nil
}

func (c *Conn) close(reason string) {
	c.once.Do(func() {
		c.reason = reason
		c.cancel()
		_ = c.ssh.Close()
		c.trMu.Lock()
		tr := c.tr
		c.trMu.Unlock()
		if tr != nil {
			tr.CloseIdleConnections()
		}
	})
}

// DialContext opens a channel to the agent API. network and addr are
// ignored: every channel reaches the same API. The returned net.Conn
// supports deadlines and CloseWrite (half-close).
func (c *Conn) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if c.ctx.Err() != nil {
		return nil, fmt.Errorf("tunnel %d: dial: %w", c.id, ErrClosed)
	}
	type opened struct {
		ch   ssh.Channel
		reqs <-chan *ssh.Request
		err  error
	}
	// OpenChannel waits for the agent's answer and cannot be cancelled: it
	// runs aside, and a channel opened after ctx ended is closed.
	res := make(chan opened, 1)
	go func() {
		ch, reqs, err := c.ssh.OpenChannel(channelType, nil)
		res <- opened{ch, reqs, err}
	}()
	select {
	case o := <-res:
		if o.err != nil {
			return nil, fmt.Errorf("tunnel %d: open channel: %w", c.id, o.err)
		}
		go ssh.DiscardRequests(o.reqs)
		return newStream(o.ch, c.ws.LocalAddr(), c.ws.RemoteAddr(), nil), nil
	case <-ctx.Done():
		go func() {
			if o := <-res; o.err == nil {
				go ssh.DiscardRequests(o.reqs)
				_ = o.ch.Close()
			}
		}()
		return nil, fmt.Errorf("tunnel %d: open channel: %w", c.id, ctx.Err())
	}
}

// Transport returns the http.Transport that reaches the agent API through
// this tunnel (always the same one for c). Use any host in request URLs,
// e.g. http://agent/v2/ping.
func (c *Conn) Transport() *http.Transport {
	c.trMu.Lock()
	defer c.trMu.Unlock()
	if c.tr == nil {
		c.tr = &http.Transport{
			DialContext:         c.DialContext,
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     apiIdleTimeout,
		}
	}
	return c.tr
}
