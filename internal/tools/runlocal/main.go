// Command runlocal is what `make run` starts: outpost-server on its embedded
// defaults plus an async outpost-agent on this machine's Docker engine,
// registered as a trusted environment named "local" with short frequencies,
// so a newcomer's first look shows their own engine.
//
//	runlocal [-data ./data] [-bind :9443] [-tunnel-addr :8000] [-public-url URL] [-metrics-addr 127.0.0.1:9090]
//
// The server advertises an address containers on this host can reach (the
// Docker bridge's gateway), so the docker run line it prints works here.
// The administrator password comes from OUTPOST_ADMIN_PASSWORD, else from
// DATA/admin-password (made on the first run, mode 0600). SIGINT or SIGTERM
// stops both processes and exits 0.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"outpost/internal/dockerhost"
)

func main() {
	data := flag.String("data", "data", "data directory (server in DATA/server, agent in DATA/agent)")
	bind := flag.String("bind", ":9443", "server address (make run BIND=...)")
	tunnel := flag.String("tunnel-addr", ":8000", "tunnel listener address (make run TUNNEL_ADDR=...)")
	public := flag.String("public-url", "", "URL devices use to reach the server (default: https://BRIDGE-GATEWAY:PORT, reachable from containers here)")
	metrics := flag.String("metrics-addr", "127.0.0.1:9090", "the server's /metrics listener (off disables it)")
	bin := flag.String("bin", "bin", "directory holding outpost-server and outpost-agent")
	freq := flag.Int("frequency", 5, "ping, snapshot and command frequency of the local agent, seconds")
	flag.Parse()
	if err := run(*data, *bind, *tunnel, *public, *metrics, *bin, *freq); err != nil {
		fmt.Fprintf(os.Stderr, "make run: %v\n", err)
		os.Exit(1)
	}
}

func run(data, bind, tunnel, public, metrics, bin string, freq int) error {
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	pw, fresh, err := password(data)
	if err != nil {
		return err
	}
	bindHost, port, err := net.SplitHostPort(bind)
	if err != nil {
		return fmt.Errorf("BIND=%q: want host:port or :port: %w", bind, err)
	}
	if _, _, err := net.SplitHostPort(tunnel); err != nil {
		return fmt.Errorf("TUNNEL_ADDR=%q: want host:port or :port: %w", tunnel, err)
	}
	if ip := net.ParseIP(bindHost); public == "" && (bindHost == "localhost" || ip != nil && ip.IsLoopback()) {
		fmt.Fprintf(os.Stderr, "make run: BIND=%s listens on loopback only; devices in containers will not reach it\n", bind)
		public = "https://localhost:" + port
	}
	if public == "" {
		host, err := dockerhost.BridgeGateway(context.Background())
		if err != nil {
			fmt.Fprintf(os.Stderr, "make run: %v; devices in containers will not reach https://localhost:%s (pass -public-url)\n", err, port)
			host = "localhost"
		}
		public = "https://" + net.JoinHostPort(host, port)
	}
	local := "https://localhost:" + port // how this tool reaches the server

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	srv := command(filepath.Join(bin, "outpost-server"), "--data", filepath.Join(data, "server"), "--bind", bind,
		"--tunnel-addr", tunnel, "--public-url", public, "--metrics-addr", metrics)
	srv.Env = append(os.Environ(), "OUTPOST_ADMIN_PASSWORD="+pw)
	if err := srv.Start(); err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	defer terminate(srv)

	api := &apiClient{base: local, http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // our own self-signed server
	}}}
	if err := api.waitHealthy(ctx, 30*time.Second); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if err := api.login(pw); err != nil {
		return fmt.Errorf("%w\n(the store in %s was made with another password: set OUTPOST_ADMIN_PASSWORD to it, or remove %s to start afresh)", err, filepath.Join(data, "server"), data)
	}
	key, err := api.localEnvironment(freq)
	if err != nil {
		return err
	}

	agent := command(filepath.Join(bin, "outpost-agent"))
	agent.Env = append(os.Environ(), "EDGE=1", "EDGE_ASYNC=1", "EDGE_INSECURE_POLL=1", "EDGE_KEY="+key,
		"OUTPOST_DATA_DIR="+filepath.Join(data, "agent"))
	if err := agent.Start(); err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	defer terminate(agent)

	fmt.Printf("\n  Outpost is running: open %s\n  Log in as admin with the password ", local)
	if fresh {
		fmt.Printf("%s (kept in %s)\n", pw, filepath.Join(data, "admin-password"))
	} else {
		fmt.Printf("from OUTPOST_ADMIN_PASSWORD or %s\n", filepath.Join(data, "admin-password"))
	}
	fmt.Printf("  Devices reach it at %s (the edge keys say so). The environment \"local\" is this machine's Docker engine. Ctrl-C stops both.\n\n", public)

	done := make(chan error, 2)
	go func() { done <- fmt.Errorf("server exited: %w", srv.Wait()) }()
	go func() { done <- fmt.Errorf("agent exited: %w", agent.Wait()) }()
	select {
	case <-ctx.Done():
		return nil
	case err := <-done:
		if ctx.Err() != nil {
			return nil // stopping: a child that saw the signal first is no failure
		}
		return err
	}
}

// command is a child process in a process group of its own: a Ctrl-C
// reaches this tool only, which stops the children in order.
func command(name string, args ...string) *exec.Cmd {
	c := exec.Command(name, args...)
	c.Stdout, c.Stderr = os.Stdout, os.Stderr
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return c
}

// password returns the administrator password and whether it was just made.
func password(data string) (string, bool, error) {
	if pw := os.Getenv("OUTPOST_ADMIN_PASSWORD"); pw != "" {
		return pw, false, nil
	}
	path := filepath.Join(data, "admin-password")
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), false, nil
	}
	r := make([]byte, 9)
	if _, err := rand.Read(r); err != nil {
		return "", false, err
	}
	pw := hex.EncodeToString(r)
	return pw, true, os.WriteFile(path, []byte(pw+"\n"), 0o600)
}

func terminate(c *exec.Cmd) {
	if c.Process == nil || c.ProcessState != nil {
		return
	}
	_ = c.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = c.Process.Kill()
	}
}

type apiClient struct {
	base, token string
	http        *http.Client
}

func (a *apiClient) waitHealthy(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		resp, err := a.http.Get(a.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server not healthy at %s after %v: %v", a.base, within, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (a *apiClient) call(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		return err
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(raw))
	}
	return json.Unmarshal(raw, out)
}

func (a *apiClient) login(pw string) error {
	var r struct{ Token string }
	if err := a.call("POST", "/api/auth", map[string]string{"username": "admin", "password": pw}, &r); err != nil {
		return err
	}
	a.token = r.Token
	return nil
}

type env struct {
	ID      uint64 `json:"id"`
	Name    string `json:"name"`
	EdgeKey string `json:"edgeKey"`
}

// localEnvironment returns the edge key of the environment "local", creating it.
func (a *apiClient) localEnvironment(freq int) (string, error) {
	var page struct {
		Items []env `json:"items"`
	}
	if err := a.call("GET", "/api/environments?name=local&limit=1000", nil, &page); err != nil {
		return "", err
	}
	for _, e := range page.Items {
		if e.Name != "local" {
			continue
		}
		if e.EdgeKey != "" {
			return e.EdgeKey, nil // bound: the agent's data dir holds the rest
		}
		// Created on an earlier run that never bound it: the key with its
		// enrollment secret was shown once, so ask for a new one.
		if err := a.call("POST", fmt.Sprintf("/api/environments/%d/edge-key", e.ID), nil, &e); err != nil {
			return "", err
		}
		return e.EdgeKey, nil
	}
	var e env
	err := a.call("POST", "/api/environments", map[string]any{
		"name": "local", "mode": "async",
		"frequencies": map[string]int{"ping": freq, "snapshot": freq, "command": freq},
	}, &e)
	if err != nil {
		return "", err
	}
	if e.EdgeKey == "" {
		return "", errors.New("server returned no edge key")
	}
	return e.EdgeKey, nil
}
