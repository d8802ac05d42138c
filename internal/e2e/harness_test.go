//go:build integration

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"outpost/internal/testenv"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds outpost-server and outpost-agent, with the agent's
// compose helper beside it, once per test process.
func binaries(t testing.TB) (server, agent string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "outpost-e2e-bin")
		if buildErr != nil {
			return
		}
		for _, name := range []string{"outpost-server", "outpost-agent", "outpost-compose"} {
			if out, err := testenv.GoBuild(filepath.Join(binDir, name), "outpost/cmd/"+name); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", name, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "outpost-server"), filepath.Join(binDir, "outpost-agent")
}

// proc is a started process (testenv.Proc) with the e2e tests' readings
// of its output.
type proc struct{ *testenv.Proc }

func start(t testing.TB, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	return &proc{testenv.Start(t, name, env, bin, args...)}
}

// freeAddr returns a loopback address with a port nothing listens on now.
func freeAddr(t testing.TB) string { return testenv.FreeAddr(t) }

// server is a running outpost-server and an API client logged in as admin.
type server struct {
	URL   string
	token string
	http  *http.Client
	proc  *proc
}

const adminPassword = "e2e-password-1"

var listeningRE = regexp.MustCompile(`msg="outpost server listening" url=(\S+)`)

// startServer starts outpost-server; flags are added to its command line
// (e.g. "--client-ca", file).
func startServer(t testing.TB, flags ...string) *server {
	t.Helper()
	bin, _ := binaries(t)
	p := start(t, "server", []string{"OUTPOST_ADMIN_PASSWORD=" + adminPassword}, bin,
		append([]string{"--data", t.TempDir(), "--bind", "127.0.0.1:0", "--tunnel-addr", freeAddr(t), "--metrics-addr", "127.0.0.1:0"}, flags...)...)
	s := &server{proc: p, http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the server's self-signed certificate
	}}}
	deadline := time.Now().Add(20 * time.Second)
	for s.URL == "" {
		if m := listeningRE.FindStringSubmatch(p.Out.String()); m != nil {
			s.URL = m[1]
			break
		}
		if time.Now().After(deadline) || p.Cmd.ProcessState != nil {
			t.Fatalf("server did not start:\n%s", p.Out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var auth struct{ Token string }
	s.do(t, "POST", "/api/auth", map[string]string{"username": "admin", "password": adminPassword}, &auth, http.StatusOK)
	s.token = auth.Token
	return s
}

// do calls the JSON API and decodes the answer into out, failing the test on
// any status but want.
func (s *server) do(t testing.TB, method, path string, body, out any, want int) {
	t.Helper()
	status, raw := s.call(t, method, path, body)
	if status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
}

func (s *server) call(t testing.TB, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(context.Background(), method, s.URL+path, rd)
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json") // the Docker API behind a tunnel insists
	}
	resp, err := s.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

type environment struct {
	ID          uint64 `json:"id"`
	EdgeKey     string `json:"edgeKey"`
	EdgeID      string `json:"edgeId"`
	Status      string `json:"status"`
	LastCheckIn int64  `json:"lastCheckIn"`
}

func (s *server) createEnvironment(t testing.TB, name string, freq int) environment {
	t.Helper()
	var e environment
	s.do(t, "POST", "/api/environments", map[string]any{
		"name": name, "mode": "async",
		"frequencies": map[string]int{"ping": freq, "snapshot": freq, "command": freq},
	}, &e, http.StatusCreated)
	return e
}

// startAgent starts outpost-agent; env adds variables (e.g.
// "EDGE_CLIENT_CERT=file").
func startAgent(t testing.TB, key, dataDir string, env ...string) *proc {
	t.Helper()
	_, bin := binaries(t)
	return start(t, "agent", append([]string{
		"EDGE=1", "EDGE_ASYNC=1", "EDGE_INSECURE_POLL=1", "EDGE_KEY=" + key, "OUTPOST_DATA_DIR=" + dataDir,
	}, env...), bin)
}

// lines returns the process output lines containing substr.
func (p *proc) lines(substr string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(p.Out.String()))
	for sc.Scan() {
		if strings.Contains(sc.Text(), substr) {
			out = append(out, sc.Text())
		}
	}
	return out
}

// startSleeper creates and starts a busybox container running `sleep 600`,
// named prefix plus a unique suffix, removed when the test ends. It returns
// the container's ID and name.
func startSleeper(t testing.TB, cli *client.Client, prefix string) (id, name string) {
	t.Helper()
	ctx := context.Background()
	img := testenv.BusyboxImage(t, cli)
	name = fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
	created, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:   name,
		Config: &container.Config{Image: img, Cmd: []string{"sleep", "600"}, Labels: map[string]string{"outpost.test": "e2e"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = cli.ContainerRemove(context.Background(), created.ID, client.ContainerRemoveOptions{Force: true})
	})
	if _, err := cli.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	return created.ID, name
}
