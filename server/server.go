package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"

	"outpost/server/store"
)

// Server is a running Outpost server.
type Server struct {
	cfg         Config
	log         *slog.Logger
	store       *store.Store
	sessions    *sessions
	checkins    *checkins
	snapLocks   envLocks
	now         func() time.Time
	url         string // public server URL, in edge keys
	tunnelAddr  string // public tunnel address, in edge keys
	fingerprint string // tunnel host key fingerprint, in edge keys
	metrics     *metrics
}

// Run starts the server and serves until ctx is done. ready, if not nil, is
// called with the server's public URL once it accepts connections.
func Run(ctx context.Context, cfg Config, ready func(url string)) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return fmt.Errorf("config:\n%w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	st, err := store.Open(filepath.Join(cfg.DataDir, "outpost.db"))
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			cfg.Logger.Error("close store", "err", err)
		}
	}()
	cert, err := loadOrCreateCert(cfg.DataDir)
	if err != nil {
		return err
	}
	hostKey, err := loadOrCreateHostKey(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("tunnel host key: %w", err)
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger, store: st, now: time.Now,
		checkins: newCheckins(), fingerprint: ssh.FingerprintSHA256(hostKey.PublicKey()),
	}
	s.sessions = newSessions(s.now)
	s.metrics = newMetrics(s.onlineCount)
	st.ObserveWrites(s.metrics.observeWrite)
	generated, err := s.ensureAdmin(cfg.AdminPassword)
	if err != nil {
		return fmt.Errorf("create administrator: %w", err)
	}

	ln, err := net.Listen("tcp", cfg.Bind)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Bind, err)
	}
	s.url = publicURL(cfg, ln.Addr())
	s.tunnelAddr = publicTunnelAddr(cfg, s.url)
	srv := &http.Server{
		Handler:           s.routes(),
		TLSConfig:         tlsConfig(cert),
		ReadHeaderTimeout: 30 * time.Second,
		// Agents on slow links keep their connection between ticks; a long
		// idle timeout saves them a TLS handshake per exchange.
		IdleTimeout: 15 * time.Minute,
		ErrorLog:    slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(ln, srv.TLSConfig)) }()
	flushDone := make(chan struct{})
	flushCtx, stopFlush := context.WithCancel(context.Background())
	go func() { defer close(flushDone); s.flushLoop(flushCtx) }()

	s.log.Info("outpost server listening", "url", s.url, "addr", ln.Addr().String(), "data", cfg.DataDir, "tunnel_fingerprint", s.fingerprint)
	if generated != "" {
		// Printed once: the store keeps only its bcrypt hash.
		fmt.Fprintf(os.Stderr, "\nAdministrator created. Log in at %s as admin with password: %s\n(shown once; set OUTPOST_ADMIN_PASSWORD to choose it)\n\n", s.url, generated)
	}
	if ready != nil {
		ready(s.url)
	}

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	stopFlush()
	<-flushDone
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// onlineCount is the number of devices online now, for the metrics.
func (s *Server) onlineCount() float64 { return float64(s.checkins.online(s.now().Unix())) }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("POST /edge/v1/sync", s.metrics.edge("sync", s.handleSync))
	mux.Handle("GET /metrics", s.metrics.handler())
	mux.HandleFunc("POST /api/auth", s.handleAuth)
	mux.HandleFunc("GET /api/environments", s.authed(s.handleListEnvironments))
	mux.HandleFunc("POST /api/environments", s.authed(s.handleCreateEnvironment))
	mux.HandleFunc("GET /api/environments/{id}", s.authed(s.handleGetEnvironment))
	mux.HandleFunc("GET /api/environments/{id}/snapshot", s.authed(s.handleSnapshot))
	mux.HandleFunc("GET /api/environments/{id}/snapshot/history", s.authed(s.handleHistory))
	mux.Handle("/", s.uiHandler())
	return mux
}

// flushLoop writes in-memory check-ins to the store every FlushInterval and
// once more when ctx ends.
func (s *Server) flushLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.flush()
			return
		case <-t.C:
			s.flush()
		}
	}
}

func (s *Server) flush() {
	d := s.checkins.take()
	if err := s.store.FlushCheckIns(d); err != nil {
		s.log.Error("flush check-ins", "err", err, "pending", len(d))
		s.checkins.putBack(d)
	}
}
