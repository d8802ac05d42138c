//go:build integration

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/moby/moby/client"

	"outpost/internal/testenv"
)

// createStandard pre-stages a standard environment polling every second.
func (s *server) createStandard(t testing.TB, name string) environment {
	t.Helper()
	var e environment
	s.do(t, "POST", "/api/environments", map[string]any{
		"name": name, "mode": "standard", "frequencies": map[string]int{"ping": 1},
	}, &e, http.StatusCreated)
	return e
}

// startStandardAgent starts an agent in standard mode (no EDGE_ASYNC).
func startStandardAgent(t testing.TB, key, dataDir string, env ...string) *proc {
	t.Helper()
	_, bin := binaries(t)
	return start(t, "agent", append([]string{
		"EDGE=1", "EDGE_INSECURE_POLL=1", "EDGE_KEY=" + key, "OUTPOST_DATA_DIR=" + dataDir,
	}, env...), bin)
}

// try calls the API without failing the test on a transport error (the
// server may be down on purpose).
func (s *server) try(method, path string, body io.Reader) (int, []byte, error) {
	req, _ := http.NewRequestWithContext(context.Background(), method, s.URL+path, body)
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, nil
}

// openTunnel asks for the tunnel and returns how long until the first
// byte of a proxied Docker call came back.
func openTunnel(t testing.TB, srv *server, env uint64) time.Duration {
	t.Helper()
	start := time.Now()
	srv.do(t, "POST", fmt.Sprintf("/api/environments/%d/tunnel", env), nil, nil, http.StatusOK)
	status, body, err := srv.try("GET", fmt.Sprintf("/api/environments/%d/docker/_ping", env), nil)
	if err != nil || status != http.StatusOK || string(body) != "OK" {
		t.Fatalf("docker _ping through the tunnel: %d %q %v", status, body, err)
	}
	return time.Since(start)
}

// TestStandardAgentLiveAccess: a standard agent opens its tunnel when asked;
// through it the API lists containers live, execs in a container over a
// websocket, and puts a file in a volume and reads it back. Left idle, the
// tunnel closes and a snapshot taken through it lands first.
func TestStandardAgentLiveAccess(t *testing.T) {
	cli := testenv.RequireDocker(t)
	_, name := startSleeper(t, cli, "outpost-e2e-live")
	srv := startServer(t)
	env := srv.createStandard(t, "live")
	agent := startStandardAgent(t, env.EdgeKey, t.TempDir(), "EDGE_INACTIVITY_TIMEOUT=4s")
	var hist []historyView
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		srv.do(t, "GET", fmt.Sprintf("/api/environments/%d/snapshot/history", env.ID), nil, &hist, http.StatusOK)
		return len(hist) == 1, fmt.Sprintf("first-contact snapshot: %+v", hist)
	})

	took := openTunnel(t, srv, env.ID)
	t.Logf("POST tunnel to the first proxied byte: %v (poll interval 1 s)", took.Round(time.Millisecond))

	var list []struct {
		Names []string `json:"Names"`
		State string   `json:"State"`
	}
	srv.do(t, "GET", fmt.Sprintf("/api/environments/%d/docker/containers/json", env.ID), nil, &list, http.StatusOK)
	found := false
	for _, c := range list {
		found = found || (len(c.Names) > 0 && c.Names[0] == "/"+name && c.State == "running")
	}
	if !found {
		t.Fatalf("live container list through the tunnel lacks %s: %+v", name, list)
	}

	// exec over a websocket, through the API and the tunnel.
	wsURL := "wss" + strings.TrimPrefix(srv.URL, "https") + fmt.Sprintf("/api/environments/%d/agent/websocket/exec?id=%s&cmd=echo&cmd=hello", env.ID, name)
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, HandshakeTimeout: 10 * time.Second}
	ws, resp, err := d.Dial(wsURL, http.Header{"Authorization": {"Bearer " + srv.token}})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("websocket exec: %v (HTTP %d)", err, status)
	}
	var out bytes.Buffer
	var closeText string
	for {
		_, msg, err := ws.ReadMessage()
		if ce, ok := err.(*websocket.CloseError); ok {
			closeText = ce.Text
			break
		} else if err != nil {
			t.Fatalf("websocket read: %v (got %q)", err, out.String())
		}
		out.Write(msg)
	}
	_ = ws.Close()
	if out.String() != "hello\n" || closeText != "exit 0" {
		t.Fatalf("exec echo: output %q, close %q", out.String(), closeText)
	}

	// Docker's own hijacked exec through the API and the tunnel, with a
	// half-close: stdin ends, and cat's output still comes back.
	if got := hijackedCat(t, srv, env.ID, name, "half-closed stdin\n"); !strings.Contains(got, "half-closed stdin") {
		t.Fatalf("hijacked exec through the tunnel: %q", got)
	}

	// A file into a volume, and back.
	vol := fmt.Sprintf("outpost-e2e-vol-%d", time.Now().UnixNano())
	if _, err := cli.VolumeCreate(context.Background(), client.VolumeCreateOptions{Name: vol}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = cli.VolumeRemove(context.Background(), vol, client.VolumeRemoveOptions{Force: true}) })
	payload := bytes.Repeat([]byte("outpost tunnel payload\n"), 1000)
	status, body, err := srv.try("POST", fmt.Sprintf("/api/environments/%d/agent/browse/put?volume=%s&path=dir/file.txt", env.ID, vol), bytes.NewReader(payload))
	if err != nil || status/100 != 2 {
		t.Fatalf("upload: %d %s %v", status, body, err)
	}
	status, body, err = srv.try("GET", fmt.Sprintf("/api/environments/%d/agent/browse/get?volume=%s&path=dir/file.txt", env.ID, vol), nil)
	if err != nil || status != http.StatusOK || !bytes.Equal(body, payload) {
		t.Fatalf("download: %d, %d bytes (want %d), %v", status, len(body), len(payload), err)
	}
	if status, body, _ := srv.try("GET", fmt.Sprintf("/api/environments/%d/agent/browse/get?volume=%s&path=../../../etc/passwd", env.ID, vol), nil); status/100 != 4 {
		t.Fatalf("path traversal through the API: %d %s", status, body)
	}

	// Idle for the inactivity timeout: the server snapshots through the
	// tunnel, then it closes; the API says so.
	// Watched without a request through the tunnel, which would keep it up.
	var e struct {
		Tunnel string `json:"tunnel"`
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		srv.do(t, "GET", fmt.Sprintf("/api/environments/%d/snapshot/history", env.ID), nil, &hist, http.StatusOK)
		srv.do(t, "GET", fmt.Sprintf("/api/environments/%d", env.ID), nil, &e, http.StatusOK)
		return len(hist) >= 2 && e.Tunnel == "idle", fmt.Sprintf("history %d entries, tunnel %q", len(hist), e.Tunnel)
	})
	if status, _, _ := srv.try("GET", fmt.Sprintf("/api/environments/%d/docker/_ping", env.ID), nil); status != http.StatusConflict {
		t.Fatalf("proxy after the tunnel closed: %d", status)
	}
	if len(agent.lines("tunnel closed for inactivity")) == 0 {
		t.Fatal("the agent did not log the inactivity close")
	}
}

// TestTunnelSurvivesServerRestart: the server is killed while a tunnel is
// up; once it is back, the agent redials (with backoff) without anyone
// asking again, and the Docker API is reachable through it.
func TestTunnelSurvivesServerRestart(t *testing.T) {
	testenv.RequireDocker(t)
	data, bind, taddr := t.TempDir(), freeAddr(t), freeAddr(t)
	srv := startServer(t, "--data", data, "--bind", bind, "--tunnel-addr", taddr)
	env := srv.createStandard(t, "restart")
	agent := startStandardAgent(t, env.EdgeKey, t.TempDir())
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		var e environment
		srv.do(t, "GET", fmt.Sprintf("/api/environments/%d", env.ID), nil, &e, http.StatusOK)
		return e.LastCheckIn != 0, "waiting for the first poll"
	})
	openTunnel(t, srv, env.ID)

	if err := srv.proc.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = srv.proc.Cmd.Wait()
	srv2 := startServer(t, "--data", data, "--bind", bind, "--tunnel-addr", taddr)
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		status, body, err := srv2.try("GET", fmt.Sprintf("/api/environments/%d/docker/_ping", env.ID), nil)
		return err == nil && status == http.StatusOK, fmt.Sprintf("docker _ping after the restart: %d %s %v", status, body, err)
	})
	if redials := agent.lines("tunnel redial"); len(redials) == 0 {
		t.Fatal("the agent did not log a redial")
	} else {
		t.Logf("redials: %d, first: %s", len(redials), redials[0])
	}
}

// BenchmarkTunnelFirstByte measures, with real binaries and a 1 s poll
// interval, the time from POST .../tunnel to the first byte of a Docker
// call proxied through the new tunnel; between rounds the tunnel closes for
// inactivity (1 s). Run: go test -tags integration -run '^$' -bench
// TunnelFirstByte -benchtime 5x ./internal/e2e
func BenchmarkTunnelFirstByte(b *testing.B) {
	testenv.RequireDocker(b)
	srv := startServer(b)
	env := srv.createStandard(b, "ttfb")
	startStandardAgent(b, env.EdgeKey, b.TempDir(), "EDGE_INACTIVITY_TIMEOUT=1s")
	var e struct {
		Tunnel      string `json:"tunnel"`
		LastCheckIn int64  `json:"lastCheckIn"`
	}
	waitIdle := func() {
		testenv.Eventually(b, 60*time.Second, func() (bool, string) {
			srv.do(b, "GET", fmt.Sprintf("/api/environments/%d", env.ID), nil, &e, http.StatusOK)
			return e.LastCheckIn != 0 && e.Tunnel == "idle", fmt.Sprintf("environment: %+v", e)
		})
	}
	var took []time.Duration
	for b.Loop() {
		b.StopTimer()
		waitIdle()
		b.StartTimer()
		took = append(took, openTunnel(b, srv, env.ID))
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "median-ms")
	b.ReportMetric(float64(took[len(took)-1].Milliseconds()), "max-ms")
}

// hijackedCat runs cat in container through the Docker API behind the
// tunnel, as the docker CLI does (POST /exec/{id}/start, Upgrade: tcp),
// writes input, closes its write side and returns everything read back.
func hijackedCat(t *testing.T, srv *server, env uint64, container, input string) string {
	t.Helper()
	var created struct {
		ID string `json:"Id"`
	}
	srv.do(t, "POST", fmt.Sprintf("/api/environments/%d/docker/containers/%s/exec", env, container), map[string]any{
		"Cmd": []string{"cat"}, "AttachStdin": true, "AttachStdout": true, "AttachStderr": true,
	}, &created, http.StatusCreated)
	host := strings.TrimPrefix(srv.URL, "https://")
	conn, err := tls.Dial("tcp", host, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	body := `{"Detach":false,"Tty":false}`
	fmt.Fprintf(conn, "POST /api/environments/%d/docker/exec/%s/start HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: %d\r\n\r\n%s",
		env, created.ID, host, srv.token, len(body), body)
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("exec start: %s %s", resp.Status, b)
	}
	if _, err := io.WriteString(conn, input); err != nil {
		t.Fatal(err)
	}
	if err := conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(br)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("read after half-close: %v (got %q)", err, out)
	}
	return string(out)
}
