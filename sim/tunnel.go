package sim

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"outpost/protocol"
	"outpost/scheduler"
	"outpost/snapshot"
	"outpost/tunnel"
)

// deviceTunnel is a standard device's reverse tunnel, through the project's
// own tunnel client: opened when a poll answer says it is required,
// redialed with tunnel.Backoff when it drops, held until the device stops.
// It never closes for inactivity, so a tunnel the simulator asked for
// stays up, idle, for the whole run.
//
// The loop is tunnel.Run's, written out so that each failed dial and each
// drop is counted as an error of the run, and the tunnels up are counted.
type deviceTunnel struct {
	n   int
	rec *recorder
	cfg tunnel.ClientConfig

	mu   sync.Mutex // guards up
	up   bool       // the keeper goroutine runs
	done sync.WaitGroup
}

func newDeviceTunnel(n int, key protocol.EdgeKey, sk ed25519.PrivateKey, rec *recorder) (*deviceTunnel, error) {
	signer, err := ssh.NewSignerFromKey(sk)
	if err != nil {
		return nil, fmt.Errorf("tunnel key: %w", err)
	}
	return &deviceTunnel{n: n, rec: rec, cfg: tunnel.ClientConfig{
		URL: "wss://" + key.TunnelAddr + "/tunnel", User: strconv.FormatUint(key.EnvironmentID, 10), Signer: signer,
		HostKeyFingerprint: key.TunnelFingerprint,
		// The pinned SSH host key authenticates the server; TLS only hides
		// the stream, as for the agent.
		TLS:        &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec // see above
		Inactivity: -1,
	}}, nil
}

// open starts the tunnel unless it runs already; the device's goroutine
// calls it with its engine, which the agent API serves as it is now.
func (t *deviceTunnel) open(ctx context.Context, eng *snapshot.Snapshot, rnd *mrand.Rand) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.up || ctx.Err() != nil {
		return
	}
	t.up = true
	cfg := t.cfg
	cfg.Handler = newAgentAPI(eng)
	b := tunnel.Backoff{Rand: mrand.New(mrand.NewPCG(rnd.Uint64(), rnd.Uint64()))}
	t.done.Go(func() {
		t.keep(ctx, cfg, b)
		t.mu.Lock()
		t.up = false
		t.mu.Unlock()
	})
}

func (t *deviceTunnel) keep(ctx context.Context, cfg tunnel.ClientConfig, b tunnel.Backoff) {
	for attempt := 0; ; {
		c, err := tunnel.Dial(ctx, cfg)
		if err == nil {
			attempt = 0
			t.rec.tunnelUp(1)
			stop := context.AfterFunc(ctx, func() { _ = c.Close() })
			err = c.Wait()
			stop()
			t.rec.tunnelUp(-1)
		}
		if ctx.Err() != nil {
			return
		}
		kind := "tunnel_dropped"
		switch {
		case c == nil && (errors.Is(err, tunnel.ErrHostKey) || errors.Is(err, tunnel.ErrRefused)):
			t.rec.fail("tunnel_refused", fmt.Errorf("device %d: %w", t.n, err))
			return
		case c == nil:
			kind = "tunnel_dial"
		}
		t.rec.fail(kind, fmt.Errorf("device %d: %w", t.n, err))
		if b.Wait(ctx, attempt) != nil {
			return
		}
		attempt++
	}
}

// wait waits for the keeper after the device's context ended.
func (t *deviceTunnel) wait() { t.done.Wait() }

// agentAPI is what a simulated device serves through its tunnel, as the
// agent's agentapi does for the few paths the simulator asks: the Docker
// Engine's /_ping and /containers/json (with or without an API version)
// from the device's engine, and the agent's /v2/ping and /v2/host/info.
// Its answers are made when the tunnel opens and never change.
type agentAPI struct {
	containers []byte
	info       []byte
}

// engineVersion is the Engine API's version prefix of a path, /v1.47.
var engineVersion = regexp.MustCompile(`^/v1\.[0-9]+/`)

func newAgentAPI(eng *snapshot.Snapshot) *agentAPI {
	// The Engine API's container summary, as much of it as a list needs.
	type summary struct {
		ID      string            `json:"Id"`
		Names   []string          `json:"Names"`
		Image   string            `json:"Image"`
		ImageID string            `json:"ImageID"`
		Command string            `json:"Command"`
		Created int64             `json:"Created"`
		State   string            `json:"State"`
		Status  string            `json:"Status"`
		Labels  map[string]string `json:"Labels"`
	}
	list := make([]summary, 0, len(eng.Containers))
	for _, c := range eng.Containers {
		list = append(list, summary{ID: c.ID, Names: []string{"/" + c.Name}, Image: c.Image, ImageID: c.ImageID, Command: c.Command,
			Created: c.Created, State: c.State.String(), Status: c.State.String(), Labels: c.Labels})
	}
	containers, _ := json.Marshal(list) // plain values: never fails
	info, _ := json.Marshal(map[string]any{
		"hostname": eng.Engine.Hostname, "os": runtime.GOOS, "arch": runtime.GOARCH, "cpus": eng.Engine.CPUs,
		"memoryTotal": eng.Engine.Memory, "agentVersion": "sim", "dockerVersion": eng.Engine.ServerVersion,
	})
	return &agentAPI{containers: containers, info: info}
}

func (a *agentAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "the simulated device answers GET only", http.StatusMethodNotAllowed)
		return
	}
	// As the agent: /v2/... is the agent's own, every other path the
	// engine's, with or without a version.
	path := r.URL.Path
	if !strings.HasPrefix(path, "/v2/") {
		if loc := engineVersion.FindStringIndex(path); loc != nil {
			path = "/engine" + path[loc[1]-1:]
		} else {
			path = "/engine" + path
		}
	}
	switch path {
	case "/engine/_ping":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("OK"))
	case "/engine/containers/json":
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(a.containers)
	case "/v2/ping":
		w.WriteHeader(http.StatusNoContent)
	case "/v2/host/info":
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(a.info)
	default:
		http.Error(w, "the simulated device does not serve "+r.URL.Path, http.StatusNotFound)
	}
}

// tunnelPaths are the requests the simulator sends through a tunnel, under
// /api/environments/{id}/: the Docker API's and the agent API's.
var tunnelPaths = []string{"docker/_ping", "docker/containers/json", "agent/ping", "agent/host/info"}

// openTunnels asks the server for the tunnels of devs (POST
// /api/environments/{id}/tunnel, which answers once the tunnel is up),
// each once its device has checked in, on a few workers, until ctx ends.
func openTunnels(ctx context.Context, a *api, devs []*device, rec *recorder) {
	jobs := make(chan *device)
	var wg sync.WaitGroup
	for range min(len(devs), 64) {
		wg.Go(func() {
			for d := range jobs {
				for !rec.isUp(d.n) {
					if !scheduler.Wait(ctx, time.Now().Add(100*time.Millisecond)) {
						return
					}
				}
				rec.tunnelAsking()
				start := time.Now()
				if err := a.openTunnel(ctx, d.env); err != nil {
					if ctx.Err() == nil {
						rec.fail("tunnel_open", err)
					}
					continue
				}
				rec.tunnelOpened(d.n, time.Since(start))
			}
		})
	}
	defer wg.Wait()
	defer close(jobs)
	for _, d := range devs {
		select {
		case jobs <- d:
		case <-ctx.Done():
			return
		}
	}
}

// tunnelTraffic sends requests through the tunnels of busy at rate per
// second until ctx ends, each to a random one whose tunnel is open (a tick
// that finds none in a few draws sends nothing).
func tunnelTraffic(ctx context.Context, rate float64, a *api, busy []*device, rec *recorder, rnd *mrand.Rand) {
	pace(ctx, rate, 16, func() func() {
		d := busy[rnd.IntN(len(busy))]
		for range 4 {
			if rec.isTunnelOpen(d.n) {
				break
			}
			d = busy[rnd.IntN(len(busy))]
		}
		if !rec.isTunnelOpen(d.n) {
			return nil
		}
		path := tunnelPaths[rnd.IntN(len(tunnelPaths))]
		return func() {
			rec.tunnelRequestSent()
			start := time.Now()
			n, err := a.through(context.WithoutCancel(ctx), d.env, path)
			if err != nil {
				rec.fail("tunnel_request", err)
			}
			rec.tunnelRequestDone(time.Since(start), n, err)
		}
	}, func() {
		rec.fail("tunnel_request_behind", fmt.Errorf("every tunnel request worker busy at %v/s", rate))
	})
}
