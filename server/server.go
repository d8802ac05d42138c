package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"outpost/scheduler"
	"outpost/server/store"
	"outpost/throttle"
	"outpost/usage"
	"outpost/waitingroom"
	"outpost/web"
)

// Server is a running Outpost server.
type Server struct {
	cfg         Config
	log         *slog.Logger
	store       *store.Store
	sessions    *sessions
	checkins    *checkins
	snapLocks   envLocks
	ids         *identities
	releases    releases
	room        *waitingroom.Registry
	now         func() time.Time
	url         string // public server URL, in edge keys
	tunnelAddr  string // public tunnel address, in edge keys
	fingerprint string // tunnel host key fingerprint, in edge keys
	metrics     *metrics
	setup       setupLink       // first-start link when no admin password was given; setup.go
	settings    settingsCache   // edge settings in memory; settings.go
	fleet       fleet           // environment summaries, tags and groups in memory; fleet.go
	vault       *vault          // seals registry credentials in the store; secrets.go
	kick        chan struct{}   // wakes the reconciler; reconcile.go
	tunnels     *tunnels        // standard agents' reverse tunnels; tunnels.go
	kubeTokens  kubeTokens      // users' service account tokens per cluster; kube.go
	pace        scheduler.Guard // slows down devices calling far faster than their frequency; edge.go
	logins      loginLimits     // lockouts of failed logins; auth.go
	refused     refusals        // this minute's refusals, aggregated for the audit log; audit.go
	usage       usage.Meter     // bytes per device and day not yet stored
	topUsage    struct {        // the fleet's top data users, summed at most once a minute (ui_envs.go)
		mu   sync.Mutex
		at   time.Time
		rows []web.UsageRow
	}
	inflight   *throttle.Budget // bytes edge requests hold, read and inflated; edge.go
	onboarding onboardingSecret // the onboarding key's secret; onboarding.go
	bodyBase   time.Duration    // the fixed part of a body's deadline; bodyBaseTime unless a test shortens it
}

// startStore readies a store opened at now: command IDs start above the
// clock's floor, and a restored store has every device confirm itself once.
func startStore(st *store.Store, log *slog.Logger, now time.Time) error {
	if err := st.RaiseCommandIDs(commandIDFloor(now)); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if !st.Restored() {
		return nil
	}
	n, err := st.MarkResync(func() []byte {
		b := make([]byte, 16)
		rand.Read(b) // never fails
		return b
	})
	if err != nil {
		return fmt.Errorf("store: mark devices to confirm after the restore: %w", err)
	}
	log.Warn("the store is a backup put back in place: each device's next request is answered with a nonce to echo, and nothing older than the restore is served", "environments", n)
	return nil
}

// commandIDFloor is what command IDs start above in a server started at
// now: its Unix time in seconds, shifted left 20 bits. A restored store's
// sequence goes back to the backup's, but the clock does not, so a command
// queued after a restore gets an ID above every ID the server gave out
// before it, and an agent's journal, which runs each ID at most once, runs
// it. (It holds while the server gives out fewer than a million command IDs
// per second of its uptime, and its clock does not go back across a
// restart; IDs stay below 2^53, exact as JSON numbers, until the year 2242.)
func commandIDFloor(now time.Time) uint64 { return uint64(now.Unix()) << 20 }

// inflightBytes is what edge requests in flight hold now, for /metrics.
func (s *Server) inflightBytes() float64 {
	now, _ := s.inflight.Used()
	return float64(now)
}

// Run starts the server and serves until ctx is done. ready, if not nil, is
// called with the server's public URL once it accepts connections.
func Run(ctx context.Context, cfg Config, ready func(url string)) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return fmt.Errorf("config:\n%w", err)
	}
	if n := applyMemoryLimit(cfg.MemoryLimit); n > 0 {
		cfg.Logger.Info("soft memory limit set", "bytes", n)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	st, err := store.Open(filepath.Join(cfg.DataDir, storeFile))
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			cfg.Logger.Error("close store", "err", err)
		}
	}()
	if err := startStore(st, cfg.Logger, time.Now()); err != nil {
		return err
	}
	cert, err := loadOrCreateCert(cfg.DataDir)
	if err != nil {
		return err
	}
	hostKey, err := loadOrCreateHostKey(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("tunnel host key: %w", err)
	}
	ids, err := newIdentities(cfg.DataDir, hostKey)
	if err != nil {
		return fmt.Errorf("identity keys: %w", err)
	}
	v, err := loadOrCreateVault(cfg.DataDir)
	if err != nil {
		return err
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger, store: st, now: time.Now, ids: ids, vault: v, kick: make(chan struct{}, 1),
		checkins: newCheckins(), fingerprint: ssh.FingerprintSHA256(hostKey.PublicKey()),
	}
	s.sessions = newSessions(s.now)
	s.tunnels = s.newTunnels(hostKey)
	defer func() { _ = s.tunnels.srv.Close() }()
	// The limiter reads s.now at each call, not the clock s.now was when
	// the room was made: tests replace it.
	if s.room, err = loadRoom(st, waitingroom.NewLimiter(func() time.Time { return s.now() })); err != nil {
		return fmt.Errorf("waiting room: %w", err)
	}
	s.inflight = throttle.NewBudget(cfg.EdgeMemory, func() { s.metrics.slowDowns.WithLabelValues("busy").Inc() })
	s.metrics = newMetrics(s.onlineCount, s.waitingCount, s.inflightBytes)
	st.ObserveWrites(s.metrics.observeWrite)
	if err := s.fleetIndex().loadErr; err != nil {
		return fmt.Errorf("load environment index: %w", err)
	}
	if err := s.loadOnboarding(); err != nil {
		return fmt.Errorf("onboarding key: %w", err)
	}
	needSetup, err := s.ensureAdmin(cfg.AdminPassword)
	if err != nil {
		return fmt.Errorf("create administrator: %w", err)
	}

	ln, err := listenEdge(ctx, cfg.Bind)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Bind, err)
	}
	s.url = publicURL(cfg, ln.Addr())
	s.tunnelAddr = publicTunnelAddr(cfg, s.url)
	srv := &http.Server{
		Handler:           s.routes(),
		TLSConfig:         edgeTLSConfig(cert, cfg.clientCAs),
		ReadHeaderTimeout: 30 * time.Second,
		// Agents on slow links keep their connection between ticks; a long
		// idle timeout saves them a TLS handshake per exchange.
		IdleTimeout: 15 * time.Minute,
		ErrorLog:    slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	frames := s.serveFrames(srv)
	tln, err := net.Listen("tcp", cfg.TunnelAddr)
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("listen %s (tunnels): %w", cfg.TunnelAddr, err)
	}
	tunnelMux := http.NewServeMux()
	tunnelMux.Handle("GET /tunnel", s.tunnels.srv)
	tsrv := &http.Server{
		Handler: tunnelMux, TLSConfig: tlsConfig(cert, nil), ReadHeaderTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	// /metrics has no login: it is served apart, on loopback by default.
	msrv := &http.Server{Handler: s.metrics.mux(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)}
	var mln net.Listener
	if cfg.MetricsAddr != MetricsOff {
		if mln, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			_, _ = ln.Close(), tln.Close()
			return fmt.Errorf("listen %s (metrics): %w; choose another --metrics-addr, or --metrics-addr %s", cfg.MetricsAddr, err, MetricsOff)
		}
	}
	errc := make(chan error, 3)
	go func() { errc <- srv.Serve(tls.NewListener(ln, srv.TLSConfig)) }()
	go func() { errc <- tsrv.Serve(tls.NewListener(tln, tsrv.TLSConfig)) }()
	if mln != nil {
		go func() { errc <- msrv.Serve(mln) }()
		s.log.Info("metrics listening", "url", "http://"+mln.Addr().String()+"/metrics")
	}
	stopControl, err := s.serveControl(ctx)
	if err != nil {
		_ = srv.Close()
		return err
	}
	defer stopControl()
	flushDone := make(chan struct{})
	flushCtx, stopFlush := context.WithCancel(context.Background())
	go func() { defer close(flushDone); s.flushLoop(flushCtx) }()
	reconcileDone := make(chan struct{})
	go func() { defer close(reconcileDone); s.reconcileLoop(flushCtx) }()

	s.log.Info("outpost server listening", "url", s.url, "addr", ln.Addr().String(), "data", cfg.DataDir, "tunnel_fingerprint", s.fingerprint)
	if loopbackURL(s.url) {
		s.log.Warn(loopbackWarning(s.url))
	}
	if needSetup {
		s.announceSetup(os.Stderr)
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
	_ = s.tunnels.srv.Close() // hijacked connections: Shutdown does not wait for them
	_ = tsrv.Shutdown(shutCtx)
	_ = msrv.Shutdown(shutCtx)
	if srv.Shutdown(shutCtx) != nil {
		frames.close(5 * time.Second) // frames still served past the timeout end before the store closes
	}
	stopFlush()
	<-flushDone
	<-reconcileDone
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// waitingCount is the waiting room's size, for the metrics.
func (s *Server) waitingCount() float64 { return float64(s.room.Size()) }

// onlineCount is the number of devices online now, for the metrics.
func (s *Server) onlineCount() float64 { return float64(s.checkins.online(s.now().Unix())) }

// routes registers the route table and nothing else; requireClientCert
// passes each handler through unless --client-ca is set.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routeTable() {
		mux.Handle(rt.pattern, s.requireClientCert(rt, s.handler(rt)))
	}
	return mux
}

// routeTable is every route of the server, each with the permission its
// caller's role must hold (grants in roles.go says which roles do). A new
// route goes here as apiRoute(pattern, permission, handler), or
// publicRoute(pattern, handler) for the few outside the role check (edge
// endpoints, /healthz, UI, login, setup); TestEveryRouteChecksRoles
// walks this table against every role.
func (s *Server) routeTable() []route {
	return []route{
		publicRoute("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })),
		publicRoute("POST /edge/v1/sync", s.metrics.edge("sync", s.handleSync)),
		publicRoute("POST /edge/v1/poll", s.metrics.edge("poll", s.handlePoll)),
		publicRoute("POST /api/auth", http.HandlerFunc(s.handleAuth)),
		apiRoute("DELETE /api/auth", permAccount, s.handleLogout),
		publicRoute("GET /setup", http.HandlerFunc(s.handleSetupForm)),
		publicRoute("POST /setup", http.HandlerFunc(s.handleSetup)),
		publicRoute("/", s.uiHandler()),

		apiRoute("GET /api/environments", permEnvRead, s.handleListEnvironments),
		apiRoute("POST /api/environments", permEnvWrite, s.handleCreateEnvironment),
		apiRoute("POST /api/environments/bulk", permEnvWrite, s.handleBulkCreateEnvironments),
		apiRoute("GET /api/environments/{id}", permEnvRead, s.handleGetEnvironment),
		apiRoute("GET /api/environments/{id}/snapshot", permEnvRead, s.handleSnapshot),
		apiRoute("GET /api/environments/{id}/snapshot/history", permEnvRead, s.handleHistory),
		apiRoute("GET /api/environments/{id}/usage", permEnvRead, s.handleUsage),
		apiRoute("POST /api/environments/{id}/commands", permEnvWrite, s.handleQueueCommand),
		apiRoute("GET /api/environments/{id}/commands", permEnvRead, s.handleCommands),
		apiRoute("POST /api/environments/{id}/tunnel", permEnvWrite, s.handleOpenTunnel),
		apiRoute("/api/environments/{id}/docker/{path...}", permEnvWrite, s.handleTunnelProxy("/")),
		apiRoute("/api/environments/{id}/agent/{path...}", permEnvWrite, s.handleTunnelProxy("/v2/")),
		// Every role reaches a cluster: the Access Restrictions table and
		// the API server's RBAC decide what each may do there (kube.go).
		apiRoute("/api/environments/{id}/kubernetes/{path...}", permEnvRead, s.handleKubeProxy),
		apiRoute("GET /api/environments/{id}/kubernetes/namespaces/access", permKubeAccess, s.handleNamespaceAccessList),
		apiRoute("GET /api/environments/{id}/kubernetes/namespaces/{ns}/access", permKubeAccess, s.handleNamespaceAccess),
		apiRoute("PUT /api/environments/{id}/kubernetes/namespaces/{ns}/access", permKubeAccess, s.handleNamespaceAccess),
		apiRoute("PATCH /api/environments/{id}", permEnvWrite, s.handlePatchEnvironment),
		apiRoute("DELETE /api/environments/{id}", permEnvWrite, s.handleDeleteEnvironment),
		apiRoute("POST /api/environments/{id}/edge-key", permEnvWrite, s.handleReissueEdgeKey),
		apiRoute("GET /api/settings/edge", permEnvRead, s.handleGetEdgeSettings),
		apiRoute("PUT /api/settings/edge", permSettingsWrite, s.handlePutEdgeSettings),
		apiRoute("GET /api/tags", permEnvRead, s.handleListTags),
		apiRoute("POST /api/tags", permEnvWrite, s.handleCreateTag),
		apiRoute("PUT /api/tags/{id}", permEnvWrite, s.handleUpdateTag),
		apiRoute("DELETE /api/tags/{id}", permEnvWrite, s.handleDeleteTag),
		apiRoute("GET /api/environment-groups", permEnvRead, s.handleListEnvGroups),
		apiRoute("POST /api/environment-groups", permEnvWrite, s.handleCreateEnvGroup),
		apiRoute("GET /api/environment-groups/{id}", permEnvRead, s.handleGetEnvGroup),
		apiRoute("PUT /api/environment-groups/{id}", permEnvWrite, s.handleUpdateEnvGroup),
		apiRoute("DELETE /api/environment-groups/{id}", permEnvWrite, s.handleDeleteEnvGroup),
		apiRoute("GET /api/edge-groups", permEnvRead, s.handleListEdgeGroups),
		apiRoute("POST /api/edge-groups", permEnvWrite, s.handleCreateEdgeGroup),
		apiRoute("GET /api/edge-groups/{id}", permEnvRead, s.handleGetEdgeGroup),
		apiRoute("PUT /api/edge-groups/{id}", permEnvWrite, s.handleUpdateEdgeGroup),
		apiRoute("DELETE /api/edge-groups/{id}", permEnvWrite, s.handleDeleteEdgeGroup),

		apiRoute("GET /api/edge-stacks", permEnvRead, s.handleListStacks),
		apiRoute("POST /api/edge-stacks", permEnvWrite, s.handleCreateStack),
		apiRoute("GET /api/edge-stacks/{id}", permEnvRead, s.handleGetStack),
		apiRoute("PUT /api/edge-stacks/{id}", permEnvWrite, s.handleUpdateStack),
		apiRoute("DELETE /api/edge-stacks/{id}", permEnvWrite, s.handleDeleteStack),
		apiRoute("GET /api/edge-stacks/{id}/status", permEnvRead, s.handleStackStatus),
		apiRoute("GET /api/edge-jobs", permEnvRead, s.handleListJobs),
		apiRoute("POST /api/edge-jobs", permEnvWrite, s.handleCreateJob),
		apiRoute("GET /api/edge-jobs/{id}", permEnvRead, s.handleGetJob),
		apiRoute("PUT /api/edge-jobs/{id}", permEnvWrite, s.handleUpdateJob),
		apiRoute("DELETE /api/edge-jobs/{id}", permEnvWrite, s.handleDeleteJob),
		apiRoute("GET /api/edge-jobs/{id}/results", permEnvRead, s.handleJobResults),
		apiRoute("POST /api/edge-jobs/{id}/collect", permEnvWrite, s.handleJobCollect),

		apiRoute("GET /api/users", permUsersManage, s.handleListUsers),
		apiRoute("POST /api/users", permUsersManage, s.handleCreateUser),
		apiRoute("GET /api/users/{id}", permAccount, s.handleGetUser),      // self, or users:manage
		apiRoute("PATCH /api/users/{id}", permAccount, s.handleUpdateUser), // own password, or users:manage
		apiRoute("DELETE /api/users/{id}", permUsersManage, s.handleDeleteUser),
		apiRoute("GET /api/users/{id}/sessions", permAccount, s.handleListSessions),      // own, or users:manage
		apiRoute("DELETE /api/users/{id}/sessions", permAccount, s.handleRevokeSessions), // own, or users:manage
		apiRoute("DELETE /api/users/{id}/sessions/{sid}", permAccount, s.handleRevokeSessions),
		apiRoute("GET /api/teams", permUsersManage, s.handleListTeams),
		apiRoute("POST /api/teams", permUsersManage, s.handleCreateTeam),
		apiRoute("DELETE /api/teams/{id}", permUsersManage, s.handleDeleteTeam),
		apiRoute("PUT /api/teams/{id}/members", permUsersManage, s.handleSetTeamMembers),
		apiRoute("GET /api/audit", permAuditRead, s.handleAudit),
		apiRoute("GET /api/backup", permBackup, s.handleBackup), // administrator only

		apiRoute("GET /api/edge/onboarding-key", permEnvWrite, s.handleOnboardingKey),
		apiRoute("POST /api/edge/onboarding-key", permEnvWrite, s.handleRotateOnboardingKey),
		apiRoute("GET /api/waiting-room", permEnvRead, s.handleWaitingRoom),
		apiRoute("POST /api/waiting-room/trust", permEnvWrite, s.handleTrust),
		apiRoute("POST /api/waiting-room/reject", permEnvWrite, s.handleReject),
	}
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
	s.flushRefusals(s.now().Unix())
	d := s.checkins.take()
	if err := s.store.FlushCheckIns(d); err != nil {
		s.log.Error("flush check-ins", "err", err, "pending", len(d))
		s.checkins.putBack(d)
	}
	if u := s.usage.Take(); len(u) > 0 {
		if err := s.store.AddUsage(u); err != nil {
			s.log.Error("flush data usage", "err", err, "pending", len(u))
			s.usage.PutBack(u)
		}
	}
	if ws := s.room.TakeSeen(); len(ws) > 0 {
		if err := s.store.FlushWaitingSeen(ws); err != nil {
			s.log.Error("flush waiting room", "err", err, "pending", len(ws))
			s.room.PutBackSeen(ws)
		}
	}
	s.expireWaiting(s.now().Unix())
}
