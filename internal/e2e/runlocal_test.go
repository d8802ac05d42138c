//go:build integration

package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"outpost/internal/testenv"
)

// repoRoot is the repository's top directory (tests run in internal/e2e).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

var runningRE = regexp.MustCompile(`Outpost is running: open (\S+)`)

// makeRun starts what make run starts (the runlocal tool, in a temp dir,
// with the relative data dir make run gives it), listening on bindHost, and
// returns its server, logged in, and the tool's process.
func makeRun(t *testing.T, bindHost string) (*server, *proc) {
	t.Helper()
	binaries(t) // outpost-server and outpost-agent in binDir
	tool := filepath.Join(binDir, "runlocal")
	if out, err := exec.Command("go", "build", "-o", tool, "outpost/internal/tools/runlocal").CombinedOutput(); err != nil {
		t.Fatalf("build runlocal: %v\n%s", err, out)
	}
	p := &proc{&testenv.Proc{Cmd: exec.Command(tool, "-data", "data", "-bind", net.JoinHostPort(bindHost, freePort(t)), "-tunnel-addr", net.JoinHostPort(bindHost, freePort(t)),
		"-metrics-addr", "off", "-bin", binDir, "-frequency", "1"), Out: &testenv.Buffer{}}}
	p.Cmd.Dir = t.TempDir()
	p.Cmd.Env = append(os.Environ(), "OUTPOST_ADMIN_PASSWORD="+adminPassword, "EDGE_HOST_ROOT=/")
	p.Cmd.Stdout, p.Cmd.Stderr = p.Out, p.Out
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("--- make run output ---\n%s", p.Out.String())
		}
	})
	var url string
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		if m := runningRE.FindStringSubmatch(p.Out.String()); m != nil {
			url = m[1]
		}
		return url != "", "make run did not say it is running"
	})
	srv := &server{URL: url, proc: p, http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}}
	var auth struct{ Token string }
	srv.do(t, "POST", "/api/auth", map[string]string{"username": "admin", "password": adminPassword}, &auth, http.StatusOK)
	srv.token = auth.Token
	return srv, p
}

// TestMakeRunRunsStacksAndJobs runs an edge stack and an edge job on make
// run's environment "local". Both failed when the agent kept the relative
// data dir make run gives it; and Ctrl-C ends make run with exit 0.
func TestMakeRunRunsStacksAndJobs(t *testing.T) {
	cli := testenv.RequireDocker(t)
	image := stackImage(t, cli)
	srv, p := makeRun(t, "127.0.0.1")
	var page struct {
		Items []environment `json:"items"`
	}
	srv.do(t, "GET", "/api/environments?name=local", nil, &page, http.StatusOK)
	if len(page.Items) != 1 {
		t.Fatalf("environments named local: %+v", page)
	}
	local := page.Items[0].ID

	name := fmt.Sprintf("rl%d", time.Now().UnixNano()%1_000_000)
	cleanProject(t, cli, name)
	var group, stack struct {
		ID uint64 `json:"id"`
	}
	srv.do(t, "POST", "/api/edge-groups", map[string]any{"name": "here", "environmentIds": []uint64{local}}, &group, http.StatusCreated)
	srv.do(t, "POST", "/api/edge-stacks", map[string]any{
		"name": name, "edgeGroupIds": []uint64{group.ID},
		"composeFile": stackCompose(image, "echo hi > /tmp/greeting; exec sleep 3600"),
	}, &stack, http.StatusCreated)
	marker := filepath.Join(t.TempDir(), "ran")
	var job struct {
		ID uint64 `json:"id"`
	}
	srv.do(t, "POST", "/api/edge-jobs", map[string]any{
		"name": "marker", "cron": "*/2 * * * * *", "script": "echo ran > " + marker + "\n", "environmentIds": []uint64{local},
	}, &job, http.StatusCreated)

	testenv.Eventually(t, 120*time.Second, func() (bool, string) {
		var v stackStatusView
		srv.do(t, "GET", fmt.Sprintf("/api/edge-stacks/%d/status", stack.ID), nil, &v, http.StatusOK)
		st, _ := v.of(local)
		return st == "running", fmt.Sprintf("stack on local: %+v", v)
	})
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		var res struct {
			Runs []struct {
				ExitCode int    `json:"exitCode"`
				Error    string `json:"error"`
			} `json:"runs"`
		}
		srv.do(t, "GET", fmt.Sprintf("/api/edge-jobs/%d/results", job.ID), nil, &res, http.StatusOK)
		return len(res.Runs) > 0 && res.Runs[0].ExitCode == 0 && res.Runs[0].Error == "", fmt.Sprintf("job results: %+v", res)
	})
	if b, err := os.ReadFile(marker); err != nil || string(b) != "ran\n" {
		t.Fatalf("the job's file: %q %v", b, err)
	}
	srv.do(t, "DELETE", fmt.Sprintf("/api/edge-jobs/%d", job.ID), nil, nil, http.StatusNoContent)
	srv.do(t, "DELETE", fmt.Sprintf("/api/edge-stacks/%d", stack.ID), nil, nil, http.StatusNoContent)
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		left := projectContainers(t, cli, name)
		return len(left) == 0, fmt.Sprintf("stack containers left: %v", left)
	})

	// Ctrl-C: both processes stop and make run exits 0.
	if err := p.Cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := p.Cmd.Wait(); err != nil {
		t.Fatalf("make run after Ctrl-C: %v", err)
	}
}

func freePort(t *testing.T) string {
	_, port, _ := net.SplitHostPort(freeAddr(t))
	return port
}

// TestDockerRunLine builds the agent image (make image), and runs the
// dockerRun line that make run's server returns, verbatim: the device's
// snapshot arrives. make run used to put https://localhost:PORT in edge
// keys, which an agent in a container cannot reach; it now advertises the
// Docker bridge's gateway.
func TestDockerRunLine(t *testing.T) {
	cli := testenv.RequireDocker(t)
	ctx := context.Background()
	if _, err := cli.ContainerInspect(ctx, "outpost-agent", client.ContainerInspectOptions{}); err == nil {
		t.Fatal("a container named outpost-agent exists already; the server's docker run line names its container so: remove it first")
	}
	if out, err := exec.Command("make", "-C", repoRoot(t), "image").CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	srv, _ := makeRun(t, "0.0.0.0")
	var e struct {
		environment
		DockerRun string   `json:"dockerRun"`
		Warnings  []string `json:"warnings"`
	}
	srv.do(t, "POST", "/api/environments", map[string]any{
		"name": "container", "mode": "async", "frequencies": map[string]int{"ping": 1, "snapshot": 1, "command": 1},
	}, &e, http.StatusCreated)
	if len(e.Warnings) != 0 {
		t.Fatalf("make run's server warns that devices cannot reach it: %v", e.Warnings)
	}
	if !strings.HasPrefix(e.DockerRun, "docker run ") {
		t.Fatalf("dockerRun: %q", e.DockerRun)
	}
	t.Cleanup(func() {
		_, _ = cli.ContainerRemove(context.Background(), "outpost-agent", client.ContainerRemoveOptions{Force: true})
		_, _ = cli.VolumeRemove(context.Background(), "outpost_agent_data", client.VolumeRemoveOptions{Force: true})
	})
	if out, err := exec.Command("sh", "-c", e.DockerRun).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", e.DockerRun, err, out)
	}
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		status, body := srv.call(t, "GET", fmt.Sprintf("/api/environments/%d/snapshot?section=engine", e.ID), nil)
		if status == http.StatusOK {
			return true, ""
		}
		logs, _ := exec.Command("docker", "logs", "--tail", "5", "outpost-agent").CombinedOutput()
		return false, fmt.Sprintf("snapshot of the containerized agent: %d %s\nagent log:\n%s", status, body, logs)
	})
}
