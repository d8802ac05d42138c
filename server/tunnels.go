package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	pathpkg "path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/client"
	"golang.org/x/crypto/ssh"

	"outpost/kube"
	"outpost/protocol"
	"outpost/server/store"
	"outpost/snapshot"
	"outpost/tunnel"
)

// Audit actions of tunnels.
const (
	auditTunnelOpen = "tunnel.open"
)

// tunnelWant is how long a tunnel request stands: the device opens its
// tunnel at its next poll, and an operator who asked and went away does not
// keep the device's link busy past it. A tunnel that came up stays until
// the agent closes it for inactivity.
const tunnelWant = 10 * time.Minute

// tunnels is the server's side of the reverse tunnels: which environments
// an operator asked a tunnel of, and the tunnel server holding them.
type tunnels struct {
	srv *tunnel.Server

	mu     sync.Mutex // guards wanted; never held across I/O
	wanted map[uint64]time.Time
}

// drop forgets that env's tunnel is wanted and closes it if it is open: the
// environment was deleted, or is async now.
func (t *tunnels) drop(env uint64) {
	t.mu.Lock()
	delete(t.wanted, env)
	t.mu.Unlock()
	if c := t.srv.Conn(env); c != nil {
		_ = c.Close()
	}
}

// newTunnels wires the tunnel server to the store: an agent authenticates
// with the identity key its environment is bound to; an unknown, untrusted,
// async or unbound environment gets no tunnel.
func (s *Server) newTunnels(host ssh.Signer) *tunnels {
	t := &tunnels{wanted: map[uint64]time.Time{}}
	t.srv = tunnel.NewServer(tunnel.ServerConfig{
		HostKey:   host,
		Authorize: s.authorizeTunnel,
		OnIdle:    s.snapshotThroughTunnel,
		OnClose: func(id uint64, reason string) {
			s.log.Info("tunnel closed", "env", id, "reason", reason)
		},
		Log: s.log,
	})
	return t
}

var errTunnelRefused = errors.New("no tunnel for this device")

func (s *Server) authorizeTunnel(user string, key ssh.PublicKey) (uint64, error) {
	id, err := strconv.ParseUint(user, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: user %q is not an environment ID", errTunnelRefused, user)
	}
	e, err := s.store.Environment(id)
	if err != nil {
		return 0, fmt.Errorf("%w: environment %d: %v", errTunnelRefused, id, err)
	}
	switch {
	case !e.Trusted:
		return 0, fmt.Errorf("%w: environment %d is not trusted", errTunnelRefused, id)
	case e.Mode != store.ModeStandard:
		return 0, fmt.Errorf("%w: environment %d is in %s mode", errTunnelRefused, id, e.Mode)
	case len(e.PublicKey) == 0:
		return 0, fmt.Errorf("%w: environment %d has no bound device yet", errTunnelRefused, id)
	}
	ck, ok := key.(ssh.CryptoPublicKey)
	if !ok {
		return 0, fmt.Errorf("%w: not an identity key", errTunnelRefused)
	}
	pub, ok := ck.CryptoPublicKey().(ed25519.PublicKey)
	if !ok || !bytes.Equal(pub, e.PublicKey) {
		s.log.Warn("tunnel refused: not the key the environment is bound to", "env", id, "key", ssh.FingerprintSHA256(key))
		return 0, fmt.Errorf("%w: environment %d is bound to another key", errTunnelRefused, id)
	}
	return id, nil
}

// tunnelStatus is what a poll answer tells the device about its tunnel.
func (s *Server) tunnelStatus(env uint64) protocol.TunnelStatus {
	if s.tunnels == nil {
		return protocol.TunnelIdle
	}
	t := s.tunnels
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.srv.Conn(env) != nil {
		// Up: whatever request there was is met. One made while the
		// tunnel is closing for inactivity (no Conn then) stays, and
		// brings the tunnel back after the close.
		delete(t.wanted, env)
		return protocol.TunnelActive
	}
	until, ok := t.wanted[env]
	if !ok {
		return protocol.TunnelIdle
	}
	if s.now().After(until) {
		delete(t.wanted, env)
		return protocol.TunnelIdle
	}
	return protocol.TunnelRequired
}

// handleOpenTunnel serves POST /api/environments/{id}/tunnel: it asks the
// device for its tunnel (at its next poll) and answers once the tunnel is
// usable, or 504 after two poll intervals and the handshake's margin.
func (s *Server) handleOpenTunnel(w http.ResponseWriter, r *http.Request, ss session) {
	e, ok := s.envFromPath(w, r)
	if !ok {
		return
	}
	start := s.now()
	if _, ok := s.awaitTunnel(w, r, ss, e); ok {
		writeJSON(w, http.StatusOK, map[string]any{"status": "active", "waitedMs": s.now().Sub(start).Milliseconds()})
	}
}

// awaitTunnel returns e's tunnel, asking the device for it and waiting up
// to two poll intervals (and the handshake's margin) when it is not open.
// When it cannot, it answers the request itself and returns false.
func (s *Server) awaitTunnel(w http.ResponseWriter, r *http.Request, ss session, e *store.Environment) (*tunnel.Conn, bool) {
	if c := s.tunnels.srv.Conn(e.ID); c != nil {
		return c, true
	}
	if e.Mode != store.ModeStandard {
		writeErr(w, http.StatusConflict, "environment %d is in %s mode: only standard agents open tunnels; its work goes through the command log", e.ID, e.Mode)
		return nil, false
	}
	t := s.tunnels
	until := s.now().Add(tunnelWant)
	t.mu.Lock()
	t.wanted[e.ID] = until
	t.mu.Unlock()
	s.audit(r, ss.user, auditTunnelOpen, envTarget(e.ID), "requested")
	freq := effectiveFrequencies(s.edgeSettings(), e.Mode, e.Frequencies)
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Duration(freq.Ping)*time.Second+15*time.Second)
	defer cancel()
	start := s.now()
	c, err := t.srv.Wait(ctx, e.ID)
	if err != nil {
		writeErr(w, http.StatusGatewayTimeout, "the device did not open its tunnel within %v (poll interval %d s): is it online? see its last check-in", s.now().Sub(start).Round(time.Second), freq.Ping)
		return nil, false
	}
	t.mu.Lock()
	if t.wanted[e.ID].Equal(until) { // ours, not a later request's
		delete(t.wanted, e.ID)
	}
	t.mu.Unlock()
	return c, true
}

// handleTunnelProxy serves /api/environments/{id}/docker/{path...} (the
// Docker Engine API of the device) and /api/environments/{id}/agent/{path...}
// (the agent API: ping, host info, browse, websocket exec and attach)
// through the environment's tunnel. Upgrades (exec, attach, websockets)
// pass through.
func (s *Server) handleTunnelProxy(prefix string) apiHandler {
	return func(w http.ResponseWriter, r *http.Request, _ session) {
		e, ok := s.envFromPath(w, r)
		if !ok {
			return
		}
		c := s.tunnels.srv.Conn(e.ID)
		if c == nil {
			writeErr(w, http.StatusConflict, "environment %d has no tunnel open: POST /api/environments/%d/tunnel first", e.ID, e.ID)
			return
		}
		path := pathpkg.Clean(prefix + r.PathValue("path"))
		if prefix == "/" && (path == "/v2" || strings.HasPrefix(path, "/v2/")) {
			writeErr(w, http.StatusNotFound, "the agent API is under /api/environments/%d/agent/, not the Docker API", e.ID)
			return
		}
		// The agent's Kubernetes gateway is reached only through
		// /api/environments/{id}/kubernetes/, which checks the caller's
		// role and names their grant: a grant sent here could be anyone's.
		if prefix == "/v2/" && (path == "/v2/kubernetes" || strings.HasPrefix(path, "/v2/kubernetes/")) {
			writeErr(w, http.StatusForbidden, "the cluster's API is under /api/environments/%d/kubernetes/, as the calling user", e.ID)
			return
		}
		if !strings.HasPrefix(path+"/", prefix) {
			writeErr(w, http.StatusBadRequest, "path %q leaves %s", r.PathValue("path"), prefix)
			return
		}
		s.proxyThroughTunnel(w, r, e.ID, c.Transport(), path, nil)
	}
}

// proxyThroughTunnel passes r to the agent API path through the tunnel
// transport rt of environment env, with the headers in set added.
func (s *Server) proxyThroughTunnel(w http.ResponseWriter, r *http.Request, env uint64, rt http.RoundTripper, path string, set http.Header) {
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = &url.URL{Scheme: "http", Host: "agent", Path: path, RawQuery: pr.In.URL.RawQuery}
			pr.Out.Host = "agent"
			// The operator's credentials stay here: a device never
			// sees a token it could replay against the server.
			for _, h := range []string{"Authorization", "Cookie", "Proxy-Authorization", kube.HeaderAs, kube.HeaderToken} {
				pr.Out.Header.Del(h)
			}
			for k, v := range set {
				pr.Out.Header[k] = v
			}
		},
		ModifyResponse: func(resp *http.Response) error {
			// What a device answers is data, never a page or a cookie
			// of the server's origin.
			resp.Header.Del("Set-Cookie")
			resp.Header.Set("Content-Security-Policy", "sandbox")
			resp.Header.Set("X-Content-Type-Options", "nosniff")
			return nil
		},
		Transport:     rt,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeErr(w, http.StatusBadGateway, "through the tunnel of environment %d: %v", env, err)
		},
	}
	p.ServeHTTP(w, r)
}

// snapshotThroughTunnel is the tunnel's last act before it closes for
// inactivity: a full snapshot of the device, read through the tunnel.
func (s *Server) snapshotThroughTunnel(ctx context.Context, c *tunnel.Conn) {
	if e, err := s.store.Environment(c.ID()); err == nil && isKube(e) {
		return // a cluster has no engine to read; its agent's own snapshots, from its watches, are current
	}
	cli, err := client.New(client.WithHost("http://agent"), client.WithHTTPClient(&http.Client{Transport: c.Transport()}))
	if err != nil {
		s.log.Warn("tunnel snapshot: docker client", "env", c.ID(), "err", err)
		return
	}
	defer cli.Close()
	d, err := snapshot.NewDockerCollector(cli).Collect(ctx)
	if err != nil {
		s.log.Warn("tunnel snapshot: collect", "env", c.ID(), "err", err)
		return
	}
	data, err := protocol.Marshal(d)
	if err != nil {
		return
	}
	push := &protocol.SnapshotPush{Data: data} // Seq 0: the next one, under the snapshot lock
	if _, err := s.ingestSnapshot(c.ID(), push, s.now()); err != nil {
		s.log.Warn("tunnel snapshot: store", "env", c.ID(), "err", err)
		return
	}
	s.log.Info("snapshot taken through the tunnel before it closed", "env", c.ID(), "seq", push.Seq, "containers", len(d.Containers))
}
