package agentapi_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"outpost/edgeagent/agentapi"
)

// fakeEngine serves, on a unix socket:
//
//	/v1.41/echo          the method, path and query it got, as JSON
//	/stream              "first\n", flushed, then waits for release before "second\n"
//	/exec/x/start        an Upgrade: tcp switch that reads stdin to EOF, then
//	                     answers "got:" and what it read, and closes
//
// It returns the socket's DockerHost and the channel that releases /stream.
func fakeEngine(t *testing.T) (string, chan struct{}) {
	t.Helper()
	// Unix socket paths are short; t.TempDir's can be too long.
	dir, err := os.MkdirTemp("", "agentapi")
	must(t, err)
	sock := filepath.Join(dir, "e.sock")
	ln, err := net.Listen("unix", sock)
	must(t, err)
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/v1.41/echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"method": r.Method, "path": r.URL.Path, "query": r.URL.RawQuery})
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first\n")
		_ = http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "second\n")
	})
	mux.HandleFunc("/exec/x/start", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "tcp" {
			http.Error(w, "want Upgrade: tcp", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer func() { _ = conn.Close() }()
		_, _ = io.WriteString(conn, "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
		buffered, _ := brw.Reader.Peek(brw.Reader.Buffered())
		stdin, _ := io.ReadAll(io.MultiReader(bytes.NewReader(buffered), conn)) // to the client's half-close
		_, _ = fmt.Fprintf(conn, "got:%s", stdin)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		_ = os.RemoveAll(dir)
	})
	return "unix://" + sock, release
}

func newProxyServer(t *testing.T, dockerHost string) *httptest.Server {
	t.Helper()
	api, err := agentapi.New(agentapi.Config{DockerHost: dockerHost, VolumesRoot: t.TempDir(), Version: "test", Log: slog.New(slog.DiscardHandler)})
	must(t, err)
	srv := httptest.NewServer(api)
	t.Cleanup(func() {
		srv.Close()
		_ = api.Close()
	})
	return srv
}

func TestPassthroughFakeEngine(t *testing.T) {
	host, release := fakeEngine(t)
	srv := newProxyServer(t, host)

	t.Run("request and answer unchanged", func(t *testing.T) {
		res, err := http.Post(srv.URL+"/v1.41/echo?all=1&filters=%7B%7D", "application/json", strings.NewReader("{}"))
		must(t, err)
		defer func() { _ = res.Body.Close() }()
		var got map[string]string
		must(t, json.NewDecoder(res.Body).Decode(&got))
		if got["method"] != "POST" || got["path"] != "/v1.41/echo" || got["query"] != "all=1&filters=%7B%7D" {
			t.Errorf("engine saw %v", got)
		}
		if res.Header.Get("Api-Version") != "1.41" || res.Header.Get(agentapi.HeaderAgentVersion) != "test" || res.Header.Get(agentapi.HeaderAPIVersion) != "2" {
			t.Errorf("headers %v: want the engine's and the agent's", res.Header)
		}
	})

	t.Run("streams flush at once", func(t *testing.T) {
		res, err := http.Get(srv.URL + "/stream")
		must(t, err)
		defer func() { _ = res.Body.Close() }()
		br := bufio.NewReader(res.Body)
		// The engine holds "second" until the first line got through: an
		// unflushed proxy deadlocks here, and the test times out.
		line, err := br.ReadString('\n')
		if err != nil || line != "first\n" {
			t.Fatalf("first line %q, %v", line, err)
		}
		close(release)
		rest, err := io.ReadAll(br)
		if err != nil || string(rest) != "second\n" {
			t.Fatalf("rest %q, %v", rest, err)
		}
	})

	t.Run("hijack with pipelined stdin and half-close", func(t *testing.T) {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		must(t, err)
		defer func() { _ = conn.Close() }()
		must(t, conn.SetDeadline(time.Now().Add(30*time.Second)))
		// The request and the first stdin bytes in one write: the agent's
		// server reads "early" into its buffer with the request.
		_, err = io.WriteString(conn, "POST /exec/x/start HTTP/1.1\r\nHost: agent\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\nearly,")
		must(t, err)
		br := bufio.NewReader(conn)
		res, err := http.ReadResponse(br, nil)
		must(t, err)
		if res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get(agentapi.HeaderAgentVersion) != "test" {
			t.Fatalf("answer %s %v, want 101 with the agent's headers", res.Status, res.Header)
		}
		_, err = io.WriteString(conn, "late")
		must(t, err)
		must(t, conn.(*net.TCPConn).CloseWrite())
		out, err := io.ReadAll(br)
		if err != nil || string(out) != "got:early,late" {
			t.Fatalf("after half-close read %q, %v; want got:early,late", out, err)
		}
	})

	t.Run("engine down is 502 JSON", func(t *testing.T) {
		down := newProxyServer(t, "unix:///nonexistent/engine.sock")
		res, err := http.Get(down.URL + "/containers/json")
		must(t, err)
		defer func() { _ = res.Body.Close() }()
		var e struct{ Message string }
		if err := json.NewDecoder(res.Body).Decode(&e); err != nil || res.StatusCode != http.StatusBadGateway || e.Message == "" {
			t.Errorf("answer %d %q %v, want 502 with a message", res.StatusCode, e.Message, err)
		}
	})
}

func TestPing(t *testing.T) {
	srv := newProxyServer(t, "unix:///nonexistent/engine.sock")
	res, err := http.Get(srv.URL + "/v2/ping")
	must(t, err)
	_ = res.Body.Close()
	if res.StatusCode != http.StatusNoContent || res.Header.Get(agentapi.HeaderAgentVersion) != "test" || res.Header.Get(agentapi.HeaderAPIVersion) != agentapi.APIVersion {
		t.Errorf("ping: %s %v", res.Status, res.Header)
	}
}

func TestNewReportsEveryProblem(t *testing.T) {
	_, err := agentapi.New(agentapi.Config{DockerHost: "nonsense", VolumesRoot: "relative/dir", MaxUpload: -1})
	if err == nil {
		t.Fatal("New accepted a bad config")
	}
	for _, want := range []string{"DockerHost \"nonsense\"", "VolumesRoot \"relative/dir\"", "MaxUpload -1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}
