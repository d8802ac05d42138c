//go:build integration

package sim_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"outpost/internal/testenv"
)

// server is a running outpost-server binary and an API client logged in
// as its administrator.
type server struct {
	URL, Metrics string
	PID          int
	token        string
	http         *http.Client
}

const adminPassword = "sim-password-1"

var (
	listeningRE = regexp.MustCompile(`msg="outpost server listening" url=\S+ addr=(\S+)`)
	metricsRE   = regexp.MustCompile(`msg="metrics listening" url=(\S+)`)
)

// startServer builds outpost-server and starts it on loopback ports with
// its data in a temporary directory; it stops at the test's end.
func startServer(t *testing.T) *server {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "outpost-server")
	if out, err := testenv.GoBuild(bin, "outpost/cmd/outpost-server"); err != nil {
		t.Fatalf("build outpost-server: %v\n%s", err, out)
	}
	p := testenv.Start(t, "server", []string{"OUTPOST_ADMIN_PASSWORD=" + adminPassword}, bin,
		"--data", t.TempDir(), "--bind", "127.0.0.1:0", "--tunnel-addr", testenv.FreeAddr(t), "--metrics-addr", "127.0.0.1:0")
	out := p.Out
	s := &server{PID: p.Cmd.Process.Pid, http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the server's self-signed certificate
	}}}
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		m, mm := listeningRE.FindStringSubmatch(out.String()), metricsRE.FindStringSubmatch(out.String())
		if m == nil || mm == nil {
			return false, "server did not start:\n" + out.String()
		}
		// The address, not the URL's localhost, which may resolve to ::1
		// while the devices dial from 127.0.0.x.
		s.URL, s.Metrics = "https://"+m[1], mm[1]
		return true, ""
	})
	var auth struct{ Token string }
	s.do(t, "POST", "/api/auth", map[string]string{"username": "admin", "password": adminPassword}, &auth)
	s.token = auth.Token
	return s
}

// do calls the JSON API, wants a 2xx answer and decodes it into out.
func (s *server) do(t *testing.T, method, path string, body, out any) {
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
	resp, err := s.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
}

// logWriter passes the simulator's progress lines to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func envPath(id uint64, rest string) string { return fmt.Sprintf("/api/environments/%d%s", id, rest) }
