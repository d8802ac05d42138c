package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/ssh"
)

// ClientConfig configures the agent end of a tunnel.
type ClientConfig struct {
	// URL is the server's tunnel endpoint, wss://host:8000/tunnel (ws://
	// is accepted, for tests).
	URL string

	// User is the environment ID, in decimal.
	User string

	// Signer is the agent's identity key (Ed25519): the server authorizes
	// the tunnel by it.
	Signer ssh.Signer

	// HostKeyFingerprint is the server's tunnel host key fingerprint, in
	// ssh.FingerprintSHA256 form, from the edge key. Any other host key is
	// refused with ErrHostKey.
	HostKeyFingerprint string

	// TLS configures wss:// connections; nil means Go's defaults.
	TLS *tls.Config

	// Handler serves the agent API on every channel the server opens.
	Handler http.Handler

	// KeepAlive is the keepalive period (0 = 20s). A server that sends
	// nothing for two periods, not even a keepalive answer, is taken for
	// dead: the tunnel ends with ErrKeepAlive.
	KeepAlive time.Duration

	// Inactivity closes the tunnel when no request has been served for
	// that long (0 = 5 min, negative = never): the agent tells the server,
	// waits for it (it takes a last snapshot), closes, and Wait returns
	// ErrInactive.
	Inactivity time.Duration

	// Header is added to the WebSocket handshake request (optional).
	Header http.Header

	// Log receives connection events; nil discards them.
	Log *slog.Logger
}

// Client is the agent end of one tunnel.
type Client struct {
	cfg ClientConfig
	ws  *wsConn
	ssh ssh.Conn
	srv *http.Server
	ln  *listener
	ka  *keepAlive

	// ctx ends when the tunnel does (handlers of the agent API see it);
	// err says why, written once before cancel.
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	err    error

	finished chan struct{} // closed when every goroutine of the tunnel has ended
	wg       sync.WaitGroup

	busy atomic.Int64 // agent API requests in progress
	last atomic.Int64 // last activity, in ns since ws.born

	idleMu      sync.Mutex // guards idleTimer and idleStopped; never held across I/O
	idleTimer   *time.Timer
	idleStopped bool
}

// Dial opens a tunnel: WebSocket, then SSH with the agent's key, the
// server's host key checked against the pinned fingerprint. It returns once
// the tunnel is up and serving cfg.Handler. ctx bounds the dial only.
func Dial(ctx context.Context, cfg ClientConfig) (*Client, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	d := websocket.Dialer{
		Proxy:             http.ProxyFromEnvironment,
		TLSClientConfig:   cfg.TLS,
		HandshakeTimeout:  handshakeTimeout,
		ReadBufferSize:    wsBufferSize,
		WriteBufferSize:   wsBufferSize,
		EnableCompression: false, // SSH traffic is encrypted: nothing to gain
	}
	ws, resp, err := d.DialContext(ctx, cfg.URL, cfg.Header)
	if err != nil {
		if cerr := ctxErr(ctx); cerr != nil {
			err = fmt.Errorf("%w: %v", cerr, err)
		} else if resp != nil {
			err = fmt.Errorf("%w (HTTP %s)", err, resp.Status)
		}
		return nil, fmt.Errorf("tunnel dial %s: %w", cfg.URL, err)
	}
	nc := newWSConn(ws)
	sc, chans, reqs, err := handshake(ctx, nc, &cfg)
	if err != nil {
		return nil, fmt.Errorf("tunnel dial %s: %w", cfg.URL, err)
	}

	c := &Client{cfg: cfg, ws: nc, ssh: sc, finished: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.touch()
	c.ln = newListener(nc.LocalAddr())
	c.srv = &http.Server{
		Handler:     api{c},
		IdleTimeout: apiIdleTimeout,
		// Besides bounding a request's header, this makes the server set a
		// read deadline before its first read, so its streams use their
		// pump from the start (see stream).
		ReadHeaderTimeout: handshakeTimeout,
		BaseContext:       func(net.Listener) context.Context { return c.ctx },
		ErrorLog:          slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug),
	}
	c.ka = startKeepAlive(cfg.KeepAlive, sc, nc, func() {
		c.shutdown(fmt.Errorf("tunnel %s: %w for %v", cfg.URL, ErrKeepAlive, 2*cfg.KeepAlive))
	})
	if cfg.Inactivity > 0 {
		c.idleMu.Lock()
		c.idleTimer = time.AfterFunc(cfg.Inactivity, c.checkIdle)
		c.idleMu.Unlock()
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		_ = c.srv.Serve(c.ln)
	}()
	go c.loop(chans, reqs)
	cfg.Log.Info("tunnel up", "url", cfg.URL, "env", cfg.User)
	return c, nil
}

// handshake runs the SSH client handshake on nc, bounded by ctx and
// handshakeTimeout; on error nc is closed.
func handshake(ctx context.Context, nc *wsConn, cfg *ClientConfig) (ssh.Conn, <-chan ssh.NewChannel, <-chan *ssh.Request, error) {
	u, _ := url.Parse(cfg.URL) // checked by cfg.check
	scfg := &ssh.ClientConfig{
		User:          cfg.User,
		Auth:          []ssh.AuthMethod{ssh.PublicKeys(cfg.Signer)},
		ClientVersion: "SSH-2.0-Outpost-agent",
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if got := ssh.FingerprintSHA256(key); got != cfg.HostKeyFingerprint {
				return &hostKeyError{got: got, want: cfg.HostKeyFingerprint}
			}
			return nil
		},
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	t := time.AfterFunc(handshakeTimeout, func() { _ = nc.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(nc, u.Host, scfg)
	late, cancelled := !t.Stop(), !stop()
	var hk *hostKeyError
	switch {
	case err == nil && (late || cancelled):
		_ = sc.Close()
		err = errors.New("ended by timeout or cancellation")
	case err == nil:
		return sc, chans, reqs, nil
	default:
		_ = nc.Close()
	}
	switch {
	case errors.As(err, &hk):
		return nil, nil, nil, hk
	case cancelled:
		return nil, nil, nil, fmt.Errorf("ssh handshake: %w", ctx.Err())
	case late:
		return nil, nil, nil, fmt.Errorf("ssh handshake: not done after %v", handshakeTimeout)
	case strings.Contains(err.Error(), "unable to authenticate"):
		return nil, nil, nil, fmt.Errorf("%w: key %s is not accepted for environment %s "+
			"(the device may not be trusted yet, or the environment is bound to another key)",
			ErrRefused, ssh.FingerprintSHA256(cfg.Signer.PublicKey()), cfg.User)
	}
	return nil, nil, nil, fmt.Errorf("ssh handshake: %w", err)
}

// ctxErr is ctx.Err(), or DeadlineExceeded from the deadline on: an I/O
// deadline taken from ctx can pass before ctx's own timer has fired.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// loop answers the server's requests and hands its channels to the agent
// API until the connection ends, then cleans up.
func (c *Client) loop(chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	for chans != nil || reqs != nil {
		select {
		case nc, ok := <-chans:
			if !ok {
				chans = nil
				continue
			}
			c.wg.Add(1)
			go c.accept(nc)
		case r, ok := <-reqs:
			if !ok {
				reqs = nil
				continue
			}
			if r.Type == keepAliveRequest {
				_ = r.Reply(true, nil)
			} else if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
	}
	c.shutdown(fmt.Errorf("tunnel %s: connection ended: %w", c.cfg.URL, c.ssh.Wait()))
	c.ka.stop()
	c.idleMu.Lock()
	c.idleStopped = true
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	c.idleMu.Unlock()
	_ = c.ln.Close()
	_ = c.srv.Close()
	c.wg.Wait()
	c.cfg.Log.Info("tunnel down", "url", c.cfg.URL, "env", c.cfg.User, "err", c.err)
	close(c.finished)
}

// accept serves one channel the server opened.
func (c *Client) accept(nc ssh.NewChannel) {
	defer c.wg.Done()
	if nc.ChannelType() != channelType {
		_ = nc.Reject(ssh.UnknownChannelType, "only "+channelType+" channels")
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	c.touch()
	s := newStream(ch, c.ws.LocalAddr(), c.ws.RemoteAddr(), c.touch)
	if !c.ln.offer(s) {
		_ = s.Close()
	}
}

// api is the agent's handler, counted: a request in progress keeps the
// tunnel active however quiet it is (a log follow, an idle shell).
type api struct{ c *Client }

func (a api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.c.busy.Add(1)
	a.c.touch()
	defer func() {
		a.c.touch()
		a.c.busy.Add(-1)
	}()
	a.c.cfg.Handler.ServeHTTP(w, r)
}

func (c *Client) touch() {
	c.last.Store(int64(time.Since(c.ws.born)))
}

// checkIdle runs on the inactivity timer: it closes an idle tunnel or sets
// the timer for when it could be.
func (c *Client) checkIdle() {
	if c.ctx.Err() != nil {
		return
	}
	wait := c.cfg.Inactivity
	if c.busy.Load() == 0 {
		quiet := time.Since(c.ws.born) - time.Duration(c.last.Load())
		if quiet >= c.cfg.Inactivity {
			c.closeIdle()
			return
		}
		wait -= quiet
	}
	c.idleMu.Lock()
	defer c.idleMu.Unlock()
	if !c.idleStopped {
		c.idleTimer.Reset(wait)
	}
}

// closeIdle announces the close to the server, waits (bounded) for its
// answer, which comes once it has used the tunnel a last time, and closes.
// Channels the server opens meanwhile are served as usual.
func (c *Client) closeIdle() {
	c.cfg.Log.Info("tunnel idle: closing", "url", c.cfg.URL, "env", c.cfg.User, "after", c.cfg.Inactivity)
	err := fmt.Errorf("tunnel %s: %w (no request for %v)", c.cfg.URL, ErrInactive, c.cfg.Inactivity)
	t := time.AfterFunc(idleWait, func() { c.shutdown(err) }) // frees SendRequest
	_, _, _ = c.ssh.SendRequest(idleRequest, true, nil)
	t.Stop()
	c.shutdown(err)
}

// shutdown ends the tunnel with err, once; the first reason wins.
func (c *Client) shutdown(err error) {
	c.once.Do(func() {
		c.err = err
		c.cancel()
		_ = c.ssh.Close()
	})
}

// Wait returns when the tunnel has ended and everything it ran has
// stopped, with why: ErrInactive, ErrKeepAlive, ErrClosed (Close), or the
// connection's end (the server closed it or the network failed).
func (c *Client) Wait() error {
	<-c.finished
	return c.err
}

// Close ends the tunnel and waits until it has stopped.
func (c *Client) Close() error {
	c.shutdown(fmt.Errorf("tunnel %s: %w", c.cfg.URL, ErrClosed))
	<-c.finished
	return nil
}
