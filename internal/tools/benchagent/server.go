package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"time"

	"github.com/moby/moby/client"

	"outpost/internal/testenv"
)

const adminPassword = "benchagent-password-1"

// server is a running outpost-server and an API client logged in as admin.
type server struct {
	url, token string
	http       *http.Client
}

var listeningRE = regexp.MustCompile(`msg="outpost server listening" url=(\S+)`)

// startServer starts outpost-server on loopback with a temporary data dir,
// as the e2e tests do, and logs in.
func startServer(h *harness, bin string) *server {
	p := testenv.Start(h, "server", []string{"OUTPOST_ADMIN_PASSWORD=" + adminPassword}, bin,
		"--data", h.TempDir(), "--bind", "127.0.0.1:0", "--tunnel-addr", testenv.FreeAddr(h), "--metrics-addr", "127.0.0.1:0")
	s := &server{http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the server's self-signed certificate
	}}}
	testenv.Eventually(h, 30*time.Second, func() (bool, string) {
		if m := listeningRE.FindStringSubmatch(p.Out.String()); m != nil {
			s.url = m[1]
		}
		return s.url != "" || p.Cmd.ProcessState != nil, "the server did not say it listens"
	})
	if s.url == "" {
		h.Fatalf("the server exited:\n%s", p.Out.String())
	}
	var auth struct{ Token string }
	s.do(h, "POST", "/api/auth", map[string]string{"username": "admin", "password": adminPassword}, &auth)
	s.token = auth.Token
	return s
}

// do calls the JSON API and decodes a 2xx answer into out (when not nil);
// any other status is fatal.
func (s *server) do(h *harness, method, path string, body, out any) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			h.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		h.Fatal(err)
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		h.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		h.Fatalf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(raw))
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			h.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
}

// busyboxImage returns the test busybox image, importing it when the engine
// lacks it.
func busyboxImage(h *harness) string {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		h.Fatalf("docker client: %v", err)
	}
	defer cli.Close()
	ref, err := testenv.EnsureBusybox(context.Background(), cli)
	if err != nil {
		h.Fatalf("busybox image: %v", err)
	}
	return ref
}

// removeProject removes what is left of compose project name on the engine
// (containers, networks): the stack is deleted through the API first, this
// is for an agent that could not finish.
func removeProject(name string) {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return
	}
	defer cli.Close()
	ctx := context.Background()
	label := make(client.Filters).Add("label", "com.docker.compose.project="+name)
	if res, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: label}); err == nil {
		for _, c := range res.Items {
			_, _ = cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
		}
	}
	if nets, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: label}); err == nil {
		for _, n := range nets.Items {
			_, _ = cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
		}
	}
}
