package agentapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/moby/moby/client"
	"k8s.io/client-go/rest"

	"outpost/kube"
)

// Response headers every answer of the API carries, the proxied ones included.
const (
	HeaderAgentVersion = "Outpost-Agent-Version" // Config.Version
	HeaderAPIVersion   = "Outpost-Api-Version"   // APIVersion
)

// APIVersion is the version of this API, sent in HeaderAPIVersion. It is the
// "v2" of the /v2/ paths.
const APIVersion = "2"

// Defaults of Config, in one place.
const (
	DefaultVolumesRoot = "/var/lib/docker/volumes"
	DefaultMaxUpload   = 1 << 30 // bytes
	defaultVersion     = "unknown"
)

// Config configures an API. The zero value is usable: every empty field takes
// its default.
type Config struct {
	// DockerHost is the engine's address, e.g. unix:///var/run/docker.sock
	// or tcp://127.0.0.1:2375. Empty means DOCKER_HOST, then the client's
	// default socket (TLS settings come from DOCKER_CERT_PATH and
	// DOCKER_TLS_VERIFY either way).
	DockerHost string
	// VolumesRoot is the engine's volumes directory; /v2/browse serves
	// VolumesRoot/NAME/_data. Default DefaultVolumesRoot.
	VolumesRoot string
	// Version is the agent's version, sent in HeaderAgentVersion.
	Version string
	// Log receives the API's own errors; default slog.Default().
	Log *slog.Logger
	// MaxUpload bounds one /v2/browse/put body, in bytes. Default
	// DefaultMaxUpload.
	MaxUpload int64
	// KubeConfig reaches the cluster of an agent on Kubernetes, and
	// KubeAccess keeps its users' service accounts: with both, the API
	// passes /v2/kubernetes/... to the cluster (kube.go). Give both or
	// neither.
	KubeConfig *rest.Config
	KubeAccess *kube.Access
}

// API is the agent's HTTP API, served through the tunnel. It is an
// http.Handler; New makes one, Close ends it.
type API struct {
	cfg   Config
	log   *slog.Logger
	cli   *client.Client
	proxy *httputil.ReverseProxy
	// transport carries the passthrough to the engine; Close drops its idle
	// connections.
	transport *http.Transport
	upgrader  websocket.Upgrader
	started   time.Time
	routes    map[string]route
	kube      *kubeGateway // nil on Docker

	// ctx is cancelled by Close; every request's context derives from it, so
	// Close ends streams, hijacked passthrough connections and websocket
	// sessions.
	ctx    context.Context
	cancel context.CancelFunc
	// mu guards closed and orders sessions.Add before Close's Wait; it is
	// never held across I/O.
	mu     sync.Mutex
	closed bool
	// sessions counts running websocket sessions; Close waits for them.
	sessions sync.WaitGroup
}

// route is one /v2 path: the methods it answers and its handler.
type route struct {
	methods []string
	h       func(http.ResponseWriter, *http.Request) error
}

// New checks cfg, reporting every problem at once, and returns an API. It
// does not reach the engine: the agent may start before the engine does.
func New(cfg Config) (*API, error) {
	cfg = withDefaults(cfg)
	var problems []error
	if !filepath.IsAbs(cfg.VolumesRoot) {
		problems = append(problems, fmt.Errorf("VolumesRoot %q: must be an absolute path", cfg.VolumesRoot))
	}
	if (cfg.KubeConfig == nil) != (cfg.KubeAccess == nil) {
		problems = append(problems, errors.New("KubeConfig and KubeAccess: give both or neither"))
	}
	if cfg.MaxUpload < 0 {
		problems = append(problems, fmt.Errorf("MaxUpload %d: must not be negative (0 means the default, %d)", cfg.MaxUpload, int64(DefaultMaxUpload)))
	}
	opts := []client.Opt{client.FromEnv}
	if cfg.DockerHost != "" {
		opts = append(opts, client.WithHost(cfg.DockerHost))
	}
	cli, err := client.New(opts...)
	if err != nil {
		problems = append(problems, fmt.Errorf("DockerHost %q: %w", cfg.DockerHost, err))
	}
	if len(problems) > 0 {
		if cli != nil {
			_ = cli.Close()
		}
		return nil, fmt.Errorf("agentapi: config: %w", errors.Join(problems...))
	}

	a := &API{
		cfg:     cfg,
		log:     cfg.Log,
		cli:     cli,
		started: time.Now(),
		upgrader: websocket.Upgrader{
			// The API is reached only through the tunnel, whose server side
			// authenticates the user; the browser's Origin names the
			// server, never the agent, so it cannot be checked here.
			CheckOrigin: func(*http.Request) bool { return true },
		},
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.proxy, a.transport, err = a.newProxy()
	if err != nil {
		_ = cli.Close()
		return nil, fmt.Errorf("agentapi: DockerHost %q: %w", cfg.DockerHost, err)
	}
	if cfg.KubeConfig != nil {
		if a.kube, err = a.newKubeGateway(cfg.KubeConfig, cfg.KubeAccess); err != nil {
			_ = cli.Close()
			return nil, fmt.Errorf("agentapi: kubernetes: %w", err)
		}
	}
	get := []string{http.MethodGet, http.MethodHead}
	a.routes = map[string]route{
		"/v2/ping":             {get, a.ping},
		"/v2/host/info":        {get, a.hostInfo},
		"/v2/browse/ls":        {get, a.browseList},
		"/v2/browse/get":       {get, a.browseGet},
		"/v2/browse/put":       {[]string{http.MethodPost, http.MethodPut}, a.browsePut},
		"/v2/browse/delete":    {[]string{http.MethodDelete}, a.browseDelete},
		"/v2/browse/rename":    {[]string{http.MethodPost}, a.browseRename},
		"/v2/websocket/exec":   {[]string{http.MethodGet}, a.wsExec},
		"/v2/websocket/attach": {[]string{http.MethodGet}, a.wsAttach},
		"/v2/kubernetes/token": {[]string{http.MethodPost}, a.kubeToken},
	}
	return a, nil
}

// withDefaults fills cfg's empty fields.
func withDefaults(cfg Config) Config {
	if cfg.VolumesRoot == "" {
		cfg.VolumesRoot = DefaultVolumesRoot
	}
	if cfg.MaxUpload == 0 {
		cfg.MaxUpload = DefaultMaxUpload
	}
	if cfg.Version == "" {
		cfg.Version = defaultVersion
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return cfg
}

// ServeHTTP answers /v2/... itself and proxies every other path to the engine.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set(HeaderAgentVersion, a.cfg.Version)
	h.Set(HeaderAPIVersion, APIVersion)
	if a.ctx.Err() != nil {
		writeError(w, http.StatusServiceUnavailable, "agent API closed")
		return
	}

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(a.ctx, cancel)
	defer stop()
	r = r.WithContext(ctx)

	// Engine API paths are /v1.NN/... or unversioned; none is /v2 or under it.
	if r.URL.Path != "/v2" && !strings.HasPrefix(r.URL.Path, "/v2/") {
		a.proxy.ServeHTTP(passthroughWriter{w}, r)
		return
	}
	rt, ok := a.routes[r.URL.Path]
	if !ok && strings.HasPrefix(r.URL.Path, kubePrefix+"/") {
		a.kubePass(w, r)
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, "no such agent API path %s (the API has /v2/ping, /v2/host/info, /v2/browse/*, /v2/websocket/*, /v2/kubernetes/...)", r.URL.Path)
		return
	}
	if !slices.Contains(rt.methods, r.Method) {
		h.Set("Allow", strings.Join(rt.methods, ", "))
		writeError(w, http.StatusMethodNotAllowed, "%s %s: method not allowed, use %s", r.Method, r.URL.Path, strings.Join(rt.methods, " or "))
		return
	}
	if err := rt.h(w, r); err != nil {
		a.fail(w, r, err)
	}
}

// Close ends every stream and session in flight, waits for the websocket
// sessions to finish, and releases the engine client. Requests arriving
// after Close are answered 503.
func (a *API) Close() error {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.cancel()
	a.sessions.Wait()
	a.transport.CloseIdleConnections()
	return a.cli.Close()
}

// startSession counts a websocket session in, unless the API is closed.
func (a *API) startSession() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.sessions.Add(1)
	return true
}

// ping answers 204: the agent is up.
func (a *API) ping(w http.ResponseWriter, _ *http.Request) error {
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// statusError is an error with the HTTP status it is answered with. Its
// message is shown to the user as is.
type statusError struct {
	status int
	msg    string
	err    error // cause, logged and unwrapped; may be nil
}

func (e *statusError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func (e *statusError) Unwrap() error { return e.err }

// errorf returns a statusError with a formatted message and no cause.
func errorf(status int, format string, args ...any) error {
	return &statusError{status: status, msg: fmt.Sprintf(format, args...)}
}

// fail answers err: a statusError with its status and message, anything else
// as a 500 whose cause is logged.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var se *statusError
	if !errors.As(err, &se) {
		se = &statusError{status: http.StatusInternalServerError, msg: "internal error", err: err}
	}
	if se.status >= 500 {
		a.log.Error("agent API", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, se.status, "%s", se.Error())
}

// writeError answers {"message": ...} with status.
func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]string{"message": fmt.Sprintf(format, args...)})
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// The status is out; a failed write means the client left.
	_ = json.NewEncoder(w).Encode(v)
}
