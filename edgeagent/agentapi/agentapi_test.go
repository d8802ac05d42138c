//go:build integration

package agentapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"outpost/edgeagent/agentapi"
	"outpost/internal/testenv"
)

// ioTimeout bounds every read and write of these tests against the engine.
const ioTimeout = 60 * time.Second

// agentVersion is the version the tests' agent reports.
const agentVersion = "it-1.2.3"

// newAgent serves an API on the engine the environment points at.
func newAgent(t *testing.T) (*httptest.Server, *client.Client) {
	t.Helper()
	cli := testenv.RequireDocker(t)
	api, err := agentapi.New(agentapi.Config{Version: agentVersion, Log: slog.New(slog.DiscardHandler)})
	must(t, err)
	srv := httptest.NewServer(api)
	t.Cleanup(func() {
		srv.Close()
		_ = api.Close()
	})
	return srv, cli
}

// unique returns a name no other test run uses.
func unique(prefix string) string {
	return fmt.Sprintf("outpost-agentapi-%s-%d", prefix, time.Now().UnixNano())
}

// runContainer creates and starts a busybox container running cmd, removed
// when the test ends.
func runContainer(t *testing.T, cli *client.Client, cfg container.Config, host *container.HostConfig) string {
	t.Helper()
	ctx := context.Background()
	cfg.Image = testenv.BusyboxImage(t, cli)
	cfg.Labels = map[string]string{"outpost.test": t.Name()}
	r, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{Name: unique("c"), Config: &cfg, HostConfig: host})
	must(t, err)
	t.Cleanup(func() {
		_, _ = cli.ContainerRemove(context.Background(), r.ID, client.ContainerRemoveOptions{Force: true})
	})
	_, err = cli.ContainerStart(ctx, r.ID, client.ContainerStartOptions{})
	must(t, err)
	return r.ID
}

// sleeper runs a container that does nothing for ten minutes.
func sleeper(t *testing.T, cli *client.Client) string {
	t.Helper()
	return runContainer(t, cli, container.Config{Cmd: []string{"sleep", "600"}}, nil)
}

// waitExited waits for a container to stop and returns its exit code.
func waitExited(t *testing.T, cli *client.Client, id string) int {
	t.Helper()
	var code int
	testenv.Eventually(t, ioTimeout, func() (bool, string) {
		res, err := cli.ContainerInspect(context.Background(), id, client.ContainerInspectOptions{})
		if err != nil {
			return false, err.Error()
		}
		code = res.Container.State.ExitCode
		return !res.Container.State.Running, "container state " + string(res.Container.State.Status)
	})
	return code
}

func TestHostInfoRealEngine(t *testing.T) {
	srv, cli := newAgent(t)
	res, err := http.Get(srv.URL + "/v2/ping")
	must(t, err)
	_ = res.Body.Close()
	if res.StatusCode != http.StatusNoContent || res.Header.Get(agentapi.HeaderAgentVersion) != agentVersion || res.Header.Get(agentapi.HeaderAPIVersion) != "2" {
		t.Fatalf("ping: %s %v", res.Status, res.Header)
	}

	res, err = http.Get(srv.URL + "/v2/host/info")
	must(t, err)
	defer func() { _ = res.Body.Close() }()
	if res.Header.Get(agentapi.HeaderAgentVersion) != agentVersion {
		t.Errorf("host info headers %v", res.Header)
	}
	var info agentapi.HostInfo
	must(t, json.NewDecoder(res.Body).Decode(&info))
	v, err := cli.ServerVersion(context.Background(), client.ServerVersionOptions{})
	must(t, err)
	if info.DockerVersion != v.Version || info.DockerAPIVersion != v.APIVersion || info.DockerError != "" {
		t.Errorf("engine %s (API %s, error %q), the client sees %s (API %s)", info.DockerVersion, info.DockerAPIVersion, info.DockerError, v.Version, v.APIVersion)
	}
	if info.Hostname == "" || info.OS == "" || info.Arch == "" || info.Kernel == "" || info.CPUs < 1 ||
		info.MemoryTotal == 0 || info.Uptime <= 0 || info.AgentVersion != agentVersion || info.APIVersion != "2" {
		t.Errorf("host info has empty fields: %+v", info)
	}
}

func TestPassthroughRealEngine(t *testing.T) {
	srv, cli := newAgent(t)
	id := sleeper(t, cli)

	for _, path := range []string{"/containers/json", "/v1.41/containers/json"} {
		res, err := http.Get(srv.URL + path)
		must(t, err)
		var list []struct{ ID string }
		err = json.NewDecoder(res.Body).Decode(&list)
		_ = res.Body.Close()
		must(t, err)
		found := false
		for _, c := range list {
			found = found || c.ID == id
		}
		if !found || res.Header.Get("Api-Version") == "" || res.Header.Get(agentapi.HeaderAgentVersion) != agentVersion {
			t.Errorf("GET %s: container %s listed %v; headers %v", path, id, found, res.Header)
		}
	}

	// Create and start through the agent; the container says "ready" and
	// waits, and its followed logs must show the line at once.
	name := unique("via-agent")
	body, _ := json.Marshal(map[string]any{
		"Image":  testenv.BusyboxImage(t, cli),
		"Cmd":    []string{"sh", "-c", "echo ready; exec sleep 600"},
		"Labels": map[string]string{"outpost.test": t.Name()},
	})
	res, err := http.Post(srv.URL+"/containers/create?name="+name, "application/json", bytes.NewReader(body))
	must(t, err)
	var created struct{ Id string }
	err = json.NewDecoder(res.Body).Decode(&created)
	_ = res.Body.Close()
	if err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("create through the agent: %s, %v", res.Status, err)
	}
	t.Cleanup(func() {
		_, _ = cli.ContainerRemove(context.Background(), created.Id, client.ContainerRemoveOptions{Force: true})
	})
	res, err = http.Post(srv.URL+"/v1.41/containers/"+created.Id+"/start", "", nil)
	must(t, err)
	_ = res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("start through the agent: %s", res.Status)
	}
	ins, err := cli.ContainerInspect(context.Background(), name, client.ContainerInspectOptions{})
	must(t, err)
	if !ins.Container.State.Running {
		t.Fatalf("container started through the agent is %s", ins.Container.State.Status)
	}

	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/containers/"+created.Id+"/logs?follow=1&stdout=1", nil)
	must(t, err)
	res, err = http.DefaultClient.Do(req)
	must(t, err)
	defer func() { _ = res.Body.Close() }()
	// One multiplexed frame: stream byte, 3 zero bytes, big-endian length.
	var hdr [8]byte
	if _, err := io.ReadFull(res.Body, hdr[:]); err != nil {
		t.Fatalf("followed logs: no frame before the timeout: %v", err)
	}
	line := make([]byte, binary.BigEndian.Uint32(hdr[4:]))
	_, err = io.ReadFull(res.Body, line)
	if err != nil || string(line) != "ready\n" {
		t.Fatalf("followed logs: %q, %v", line, err)
	}
}

// TestPassthroughHijackedExec speaks the Docker CLI's protocol to the agent:
// POST /exec/{id}/start with Upgrade: tcp, stdin, a half-close, the output.
func TestPassthroughHijackedExec(t *testing.T) {
	srv, cli := newAgent(t)
	id := sleeper(t, cli)

	body := `{"AttachStdin":true,"AttachStdout":true,"AttachStderr":true,"Cmd":["cat"]}`
	res, err := http.Post(srv.URL+"/v1.41/containers/"+id+"/exec", "application/json", strings.NewReader(body))
	must(t, err)
	var ex struct{ Id string }
	err = json.NewDecoder(res.Body).Decode(&ex)
	_ = res.Body.Close()
	if err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("exec create through the agent: %s, %v", res.Status, err)
	}

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	must(t, err)
	defer func() { _ = conn.Close() }()
	must(t, conn.SetDeadline(time.Now().Add(ioTimeout)))
	start := `{"Detach":false,"Tty":false}`
	_, err = fmt.Fprintf(conn, "POST /v1.41/exec/%s/start HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n"+
		"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: %d\r\n\r\n%s", ex.Id, len(start), start)
	must(t, err)
	br := bufio.NewReader(conn)
	up, err := http.ReadResponse(br, nil)
	must(t, err)
	if up.StatusCode != http.StatusSwitchingProtocols || up.Header.Get(agentapi.HeaderAgentVersion) != agentVersion {
		t.Fatalf("exec start: %s %v, want 101 with the agent's headers", up.Status, up.Header)
	}
	_, err = io.WriteString(conn, "hello through the passthrough\n")
	must(t, err)
	must(t, conn.(*net.TCPConn).CloseWrite())
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, br); err != nil {
		t.Fatalf("reading the output after the half-close: %v (so far %q)", err, stdout.String())
	}
	if stdout.String() != "hello through the passthrough\n" || stderr.Len() != 0 {
		t.Errorf("cat answered stdout %q stderr %q", stdout.String(), stderr.String())
	}
	testenv.Eventually(t, ioTimeout, func() (bool, string) {
		res, err := cli.ExecInspect(context.Background(), ex.Id, client.ExecInspectOptions{})
		if err != nil {
			return false, err.Error()
		}
		return !res.Running && res.ExitCode == 0, fmt.Sprintf("exec running %v exit %d", res.Running, res.ExitCode)
	})
}

// wsRun dials a websocket route, sends stdin (if any), optionally a close
// frame, and reads output until the agent's close frame, which it returns.
func wsRun(t *testing.T, srv *httptest.Server, route string, q url.Values, stdin string, halfClose bool) (string, *websocket.CloseError) {
	t.Helper()
	u := "ws" + strings.TrimPrefix(srv.URL, "http") + route + "?" + q.Encode()
	ws, res, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", u, err, status)
	}
	defer func() { _ = ws.Close() }()
	if res.Header.Get(agentapi.HeaderAgentVersion) != agentVersion || res.Header.Get(agentapi.HeaderAPIVersion) != "2" {
		t.Errorf("handshake headers %v lack the agent's", res.Header)
	}
	must(t, ws.SetReadDeadline(time.Now().Add(ioTimeout)))
	if stdin != "" {
		must(t, ws.WriteMessage(websocket.BinaryMessage, []byte(stdin)))
	}
	if halfClose {
		must(t, ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")))
	}
	var out strings.Builder
	for {
		kind, msg, err := ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("reading output: %v (so far %q)", err, out.String())
			}
			return out.String(), ce
		}
		if kind != websocket.BinaryMessage {
			t.Errorf("got a message of type %d, want binary", kind)
		}
		out.Write(msg)
	}
}

func TestWebsocketExec(t *testing.T) {
	srv, cli := newAgent(t)
	id := sleeper(t, cli)
	cases := []struct {
		name      string
		q         url.Values
		stdin     string
		halfClose bool
		want      string
		reason    string
	}{
		{"echo", url.Values{"cmd": {"echo", "hello"}, "tty": {"0"}}, "", false, "hello\n", "exit 0"},
		{"exit code", url.Values{"cmd": {`["sh","-c","exit 3"]`}}, "", false, "", "exit 3"},
		{"stdin then half-close", url.Values{"cmd": {"cat"}}, "abc", true, "abc", "exit 0"},
		{"stderr demultiplexed", url.Values{"cmd": {"sh", "-c", "echo err >&2"}}, "", false, "err\n", "exit 0"},
		{"tty", url.Values{"cmd": {"echo", "hi"}, "tty": {"1"}}, "", false, "hi\r\n", "exit 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.q.Set("id", id)
			out, ce := wsRun(t, srv, "/v2/websocket/exec", c.q, c.stdin, c.halfClose)
			if out != c.want || ce.Code != websocket.CloseNormalClosure || ce.Text != c.reason {
				t.Errorf("output %q, close %d %q; want %q, 1000 %q", out, ce.Code, ce.Text, c.want, c.reason)
			}
		})
	}

	t.Run("refused before the upgrade", func(t *testing.T) {
		stopped := runContainer(t, cli, container.Config{Cmd: []string{"true"}}, nil)
		waitExited(t, cli, stopped)
		for _, c := range []struct {
			q    url.Values
			want int
		}{
			{url.Values{"id": {"no-such-container-" + unique("x")}, "cmd": {"sh"}}, http.StatusNotFound},
			{url.Values{"id": {stopped}, "cmd": {"sh"}}, http.StatusConflict},
			{url.Values{"id": {id}}, http.StatusBadRequest},
			{url.Values{"id": {id}, "cmd": {"sh"}, "tty": {"maybe"}}, http.StatusBadRequest},
		} {
			u := "ws" + strings.TrimPrefix(srv.URL, "http") + "/v2/websocket/exec?" + c.q.Encode()
			_, res, err := websocket.DefaultDialer.Dial(u, nil)
			if err == nil || res == nil || res.StatusCode != c.want {
				t.Errorf("%s: %v, %v; want status %d", c.q.Encode(), err, res, c.want)
				continue
			}
			var e struct{ Message string }
			if err := json.NewDecoder(res.Body).Decode(&e); err != nil || e.Message == "" {
				t.Errorf("%s: error body not JSON with a message: %v", c.q.Encode(), err)
			}
			_ = res.Body.Close()
		}
	})
}

// TestCloseEndsSessions closes the API under a running websocket exec: the
// client gets a going-away close frame and Close returns.
func TestCloseEndsSessions(t *testing.T) {
	cli := testenv.RequireDocker(t)
	api, err := agentapi.New(agentapi.Config{Version: agentVersion, Log: slog.New(slog.DiscardHandler)})
	must(t, err)
	srv := httptest.NewServer(api)
	defer srv.Close()
	id := sleeper(t, cli)
	q := url.Values{"id": {id}, "cmd": {"sh", "-c", "echo started; exec sleep 600"}}
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/v2/websocket/exec?"+q.Encode(), nil)
	must(t, err)
	defer func() { _ = ws.Close() }()
	must(t, ws.SetReadDeadline(time.Now().Add(ioTimeout)))
	if _, msg, err := ws.ReadMessage(); err != nil || string(msg) != "started\n" {
		t.Fatalf("first output %q, %v", msg, err)
	}

	closed := make(chan error, 1)
	go func() { closed <- api.Close() }()
	select {
	case err := <-closed:
		must(t, err)
	case <-time.After(ioTimeout):
		t.Fatal("Close did not return with a websocket session open")
	}
	_, _, err = ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Errorf("after Close the client read %v, want a going-away close frame", err)
	}
	res, err := http.Get(srv.URL + "/containers/json")
	must(t, err)
	_ = res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("passthrough after Close: %s, want 503", res.Status)
	}
}

func TestWebsocketAttach(t *testing.T) {
	srv, cli := newAgent(t)
	id := runContainer(t, cli, container.Config{
		Cmd:       []string{"sh", "-c", "read line; echo got $line; exit 5"},
		OpenStdin: true,
	}, nil)
	out, ce := wsRun(t, srv, "/v2/websocket/attach", url.Values{"id": {id}}, "xyz\n", false)
	if out != "got xyz\n" || ce.Code != websocket.CloseNormalClosure || ce.Text != "exit 5" {
		t.Errorf("output %q, close %d %q; want %q, 1000 %q", out, ce.Code, ce.Text, "got xyz\n", "exit 5")
	}
	// Now it is stopped: attaching is refused with a status.
	waitExited(t, cli, id)
	_, res, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/v2/websocket/attach?id="+id, nil)
	if err == nil || res == nil || res.StatusCode != http.StatusConflict {
		t.Errorf("attach to a stopped container: %v, %v; want 409", err, res)
	}
}

// TestBrowseRealVolume browses a volume the engine made, in the engine's own
// volumes dir, and checks a container sees what the agent wrote.
func TestBrowseRealVolume(t *testing.T) {
	srv, cli := newAgent(t)
	root := agentapi.DefaultVolumesRoot
	_, err := os.ReadDir(root)
	testenv.Require(t, "readable engine volumes dir "+root, err)
	ctx := context.Background()
	vol := unique("vol")
	v, err := cli.VolumeCreate(ctx, client.VolumeCreateOptions{Name: vol, Labels: map[string]string{"outpost.test": t.Name()}})
	must(t, err)
	t.Cleanup(func() { _, _ = cli.VolumeRemove(context.Background(), vol, client.VolumeRemoveOptions{Force: true}) })
	if want := filepath.Join(root, vol, "_data"); v.Volume.Mountpoint != want {
		testenv.Require(t, "engine volumes under "+root, fmt.Errorf("volume %s is at %s, not %s", vol, v.Volume.Mountpoint, want))
	}
	_, err = os.Stat(v.Volume.Mountpoint)
	testenv.Require(t, "engine volume data on this machine", err)

	call := func(method, route string, q url.Values, body io.Reader) (int, []byte) {
		t.Helper()
		q.Set("volume", vol)
		req, err := http.NewRequest(method, srv.URL+route+"?"+q.Encode(), body)
		must(t, err)
		res, err := http.DefaultClient.Do(req)
		must(t, err)
		defer func() { _ = res.Body.Close() }()
		b, err := io.ReadAll(res.Body)
		must(t, err)
		return res.StatusCode, b
	}
	ls := func(path string) []string {
		t.Helper()
		status, b := call("GET", "/v2/browse/ls", url.Values{"path": {path}}, nil)
		if status != 200 {
			t.Fatalf("ls %q: %d %s", path, status, b)
		}
		var ents []agentapi.Entry
		must(t, json.Unmarshal(b, &ents))
		var names []string
		for _, e := range ents {
			names = append(names, e.Name)
		}
		return names
	}

	content := "written by the agent\n"
	if status, b := call("POST", "/v2/browse/put", url.Values{"path": {"docs/hello.txt"}}, strings.NewReader(content)); status != 201 {
		t.Fatalf("put: %d %s", status, b)
	}
	if got := ls("docs"); len(got) != 1 || got[0] != "hello.txt" {
		t.Errorf("ls docs: %v", got)
	}
	if status, b := call("GET", "/v2/browse/get", url.Values{"path": {"docs/hello.txt"}}, nil); status != 200 || string(b) != content {
		t.Errorf("get: %d %q", status, b)
	}

	// A container with the volume reads the file and plants two symlinks
	// that lead out: one absolute, one relative.
	id := runContainer(t, cli, container.Config{Cmd: []string{"sh", "-c", "cat /data/docs/hello.txt && ln -s /etc /data/etclink && ln -s ../../../.. /data/up"}},
		&container.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: "/data"}}})
	if code := waitExited(t, cli, id); code != 0 {
		t.Fatalf("container exited %d", code)
	}
	logs, err := cli.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	must(t, err)
	var stdout, stderr bytes.Buffer
	_, err = stdcopy.StdCopy(&stdout, &stderr, logs)
	_ = logs.Close()
	must(t, err)
	if stdout.String() != content {
		t.Errorf("the container read %q (stderr %q), want %q", stdout.String(), stderr.String(), content)
	}

	if status, b := call("POST", "/v2/browse/rename", url.Values{"path": {"docs/hello.txt"}, "newPath": {"renamed.txt"}}, nil); status != 204 {
		t.Fatalf("rename: %d %s", status, b)
	}
	if status, b := call("GET", "/v2/browse/get", url.Values{"path": {"renamed.txt"}}, nil); status != 200 || string(b) != content {
		t.Errorf("get after rename: %d %q", status, b)
	}
	if status, _ := call("GET", "/v2/browse/get", url.Values{"path": {"docs/hello.txt"}}, nil); status != 404 {
		t.Errorf("get the old name after rename: %d, want 404", status)
	}
	if status, b := call("DELETE", "/v2/browse/delete", url.Values{"path": {"renamed.txt"}}, nil); status != 204 {
		t.Fatalf("delete: %d %s", status, b)
	}
	if got := strings.Join(ls(""), " "); got != "docs etclink up" {
		t.Errorf("ls after delete: %s", got)
	}

	evil := "/etc/outpost-agentapi-test-" + vol
	refused := []struct {
		method, route string
		q             url.Values
		want          int
	}{
		{"GET", "/v2/browse/get", url.Values{"path": {"../../etc/passwd"}}, 400},
		{"GET", "/v2/browse/get", url.Values{"path": {"../../../../../../etc/passwd"}}, 400},
		{"GET", "/v2/browse/get", url.Values{"path": {"/etc/passwd"}}, 400},
		{"GET", "/v2/browse/ls", url.Values{"path": {"/"}}, 400},
		{"GET", "/v2/browse/get", url.Values{"path": {"etclink/passwd"}}, 403},
		{"GET", "/v2/browse/ls", url.Values{"path": {"etclink"}}, 403},
		{"GET", "/v2/browse/get", url.Values{"path": {"up/etc/passwd"}}, 403},
		{"POST", "/v2/browse/put", url.Values{"path": {"etclink/" + filepath.Base(evil)}}, 403},
		{"POST", "/v2/browse/rename", url.Values{"path": {"docs"}, "newPath": {"etclink/" + filepath.Base(evil)}}, 403},
		{"DELETE", "/v2/browse/delete", url.Values{"path": {"etclink/" + filepath.Base(evil)}}, 403},
	}
	for _, c := range refused {
		status, b := call(c.method, c.route, c.q, strings.NewReader("evil"))
		var e struct{ Message string }
		if status != c.want || json.Unmarshal(b, &e) != nil || e.Message == "" {
			t.Errorf("%s %s %v: %d %s; want %d with a message", c.method, c.route, c.q, status, b, c.want)
		}
	}
	if _, err := os.Lstat(evil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists after refused writes (%v)", evil, err)
		_ = os.Remove(evil)
	}

	q := url.Values{"volume": {"no-such-volume-" + vol}}
	res, err := http.Get(srv.URL + "/v2/browse/ls?" + q.Encode())
	must(t, err)
	_ = res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("ls of a missing volume: %s, want 404", res.Status)
	}
}
