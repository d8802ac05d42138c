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
	"strconv"
	"sync"
	"time"

	"github.com/moby/moby/client"
	"golang.org/x/crypto/ssh"

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
			if reason == "inactive" {
				t.mu.Lock()
				delete(t.wanted, id)
				t.mu.Unlock()
			}
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
	if s.tunnels.srv.Conn(env) != nil {
		return protocol.TunnelActive
	}
	t := s.tunnels
	t.mu.Lock()
	defer t.mu.Unlock()
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

// pollFrequencies is a standard environment's poll interval, as the ping
// and command frequencies of its answers: its own, else the server's.
func (s *Server) pollFrequencies(e *store.Environment) protocol.Frequencies {
	every := s.edgeSettings().PollInterval
	if e.Frequencies != nil && e.Frequencies.Ping != 0 {
		every = e.Frequencies.Ping
	}
	return protocol.Frequencies{Ping: every, Command: every}
}

// handleOpenTunnel serves POST /api/environments/{id}/tunnel: it asks the
// device for its tunnel (at its next poll) and answers once the tunnel is
// usable, or 504 after two poll intervals and the handshake's margin.
func (s *Server) handleOpenTunnel(w http.ResponseWriter, r *http.Request, ss session) {
	e, ok := s.envFromPath(w, r)
	if !ok {
		return
	}
	if e.Mode != store.ModeStandard {
		writeErr(w, http.StatusConflict, "environment %d is in %s mode: only standard agents open tunnels; its work goes through the command log", e.ID, e.Mode)
		return
	}
	t := s.tunnels
	if t.srv.Conn(e.ID) == nil {
		t.mu.Lock()
		t.wanted[e.ID] = s.now().Add(tunnelWant)
		t.mu.Unlock()
		s.audit(r, ss.user, auditTunnelOpen, envTarget(e.ID), "requested")
	}
	freq := s.pollFrequencies(e)
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Duration(freq.Ping)*time.Second+15*time.Second)
	defer cancel()
	start := s.now()
	if _, err := t.srv.Wait(ctx, e.ID); err != nil {
		writeErr(w, http.StatusGatewayTimeout, "the device did not open its tunnel within %v (poll interval %d s): is it online? see its last check-in", s.now().Sub(start).Round(time.Second), freq.Ping)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "active", "waitedMs": s.now().Sub(start).Milliseconds()})
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
		path := prefix + r.PathValue("path")
		p := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.Out.URL = &url.URL{Scheme: "http", Host: "agent", Path: path, RawQuery: pr.In.URL.RawQuery}
				pr.Out.Host = "agent"
				pr.Out.Header.Del("Authorization") // the operator's token stays here
			},
			Transport:     c.Transport(),
			FlushInterval: -1,
			ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
				writeErr(w, http.StatusBadGateway, "through the tunnel of environment %d: %v", e.ID, err)
			},
		}
		p.ServeHTTP(w, r)
	}
}

// snapshotThroughTunnel is the tunnel's last act before it closes for
// inactivity: a full snapshot of the device, read through the tunnel.
func (s *Server) snapshotThroughTunnel(ctx context.Context, c *tunnel.Conn) {
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
	seq := uint64(1)
	if cur, err := s.store.Snapshot(c.ID()); err == nil {
		seq = cur.Seq + 1
	}
	if _, err := s.ingestSnapshot(c.ID(), &protocol.SnapshotPush{Seq: seq, Data: data}, s.now()); err != nil {
		s.log.Warn("tunnel snapshot: store", "env", c.ID(), "err", err)
		return
	}
	s.log.Info("snapshot taken through the tunnel before it closed", "env", c.ID(), "seq", seq, "containers", len(d.Containers))
}
