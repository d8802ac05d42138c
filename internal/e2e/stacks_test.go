//go:build integration

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"outpost/internal/testenv"
)

// stackImage builds a local image (busybox plus a file) for the stack tests:
// the engine cannot pull, so the compose file names an image built here.
func stackImage(t *testing.T, cli *client.Client) string {
	t.Helper()
	testenv.BusyboxImage(t, cli) // skips (fails under CI) without busybox
	rootfs, err := testenv.BusyboxRootfs(map[string][]byte{"srv/index.txt": []byte("outpost edge stack\n")})
	if err != nil {
		t.Fatal(err)
	}
	const ref = "outpost-e2e/stackweb:1"
	if _, err := testenv.ImportImage(context.Background(), cli, ref, bytes.NewReader(rootfs), `CMD ["sh"]`); err != nil {
		t.Fatal(err)
	}
	return ref
}

// stackCompose is a one-service project whose health check passes once the
// container wrote its greeting.
func stackCompose(image, command string) string {
	return fmt.Sprintf(`services:
  web:
    image: %s
    command: ["sh", "-c", %q]
    healthcheck:
      test: ["CMD", "test", "-s", "/tmp/greeting"]
      interval: 1s
      retries: 30
`, image, command)
}

// projectContainers lists the containers of a compose project, stopped ones
// too, and removes them when the test ends.
func projectContainers(t *testing.T, cli *client.Client, project string) []string {
	t.Helper()
	res, err := cli.ContainerList(context.Background(), client.ContainerListOptions{
		All: true, Filters: make(client.Filters).Add("label", "com.docker.compose.project="+project),
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range res.Items {
		out = append(out, c.ID[:12]+":"+string(c.State))
	}
	return out
}

func cleanProject(t *testing.T, cli *client.Client, project string) {
	t.Cleanup(func() {
		ctx := context.Background()
		res, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", "com.docker.compose.project="+project)})
		if err != nil {
			return
		}
		for _, c := range res.Items {
			_, _ = cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
		}
		nets, _ := cli.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("label", "com.docker.compose.project="+project)})
		for _, n := range nets.Items {
			_, _ = cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
		}
	})
}

type stackStatusView struct {
	Version      uint64         `json:"version"`
	Summary      map[string]int `json:"summary"`
	Environments []struct {
		Env     uint64 `json:"environmentId"`
		Version uint64 `json:"version"`
		Status  string `json:"status"`
		Error   string `json:"error"`
	} `json:"environments"`
}

func (v stackStatusView) of(env uint64) (string, uint64) {
	for _, e := range v.Environments {
		if e.Env == env {
			return e.Status, e.Version
		}
	}
	return "absent", 0
}

// errorOf is the error env reports of the stack, "" if none.
func (v stackStatusView) errorOf(env uint64) string {
	for _, e := range v.Environments {
		if e.Env == env {
			return e.Error
		}
	}
	return ""
}

// waitStackStatus polls stack's status until ok holds of it (what says
// what is awaited, on a timeout) and returns it.
func (s *server) waitStackStatus(t testing.TB, stack uint64, what string, ok func(v stackStatusView) bool) stackStatusView {
	t.Helper()
	var v stackStatusView
	testenv.Eventually(t, 120*time.Second, func() (bool, string) {
		v = stackStatusView{}
		s.do(t, "GET", fmt.Sprintf("/api/edge-stacks/%d/status", stack), nil, &v, http.StatusOK)
		return ok(v), fmt.Sprintf("%s: %+v", what, v)
	})
	return v
}

// TestEdgeStackOnTwoAgents: a stack targeted at an edge group of two agents
// runs on both (healthy, per the engine), follows an update, and is removed
// from the agent whose environment leaves the group. The two agents share
// this machine's engine, each with its own project prefix.
func TestEdgeStackOnTwoAgents(t *testing.T) {
	cli := testenv.RequireDocker(t)
	image := stackImage(t, cli)
	srv := startServer(t)
	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%1_000_000)
	a, b := srv.createEnvironment(t, "stack-a", 1), srv.createEnvironment(t, "stack-b", 1)
	prefixes := map[uint64]string{a.ID: "a" + suffix + "-", b.ID: "b" + suffix + "-"}
	for _, e := range []environment{a, b} {
		startAgent(t, e.EdgeKey, t.TempDir(), "EDGE_STACK_PREFIX="+prefixes[e.ID])
		cleanProject(t, cli, prefixes[e.ID]+"web")
	}
	var group struct {
		ID uint64 `json:"id"`
	}
	srv.do(t, "POST", "/api/edge-groups", map[string]any{"name": "shops", "environmentIds": []uint64{a.ID, b.ID}}, &group, http.StatusCreated)
	var stack struct {
		ID      uint64 `json:"id"`
		Version uint64 `json:"version"`
	}
	srv.do(t, "POST", "/api/edge-stacks", map[string]any{
		"name": "web", "edgeGroupIds": []uint64{group.ID}, "env": map[string]string{"GREETING": "hello"},
		"composeFile": stackCompose(image, "echo ${GREETING} > /tmp/greeting; exec sleep 3600"),
	}, &stack, http.StatusCreated)

	waitStatus := func(what string, ok func(v stackStatusView) bool) stackStatusView {
		t.Helper()
		return srv.waitStackStatus(t, stack.ID, what, ok)
	}
	waitStatus("both running version 1", func(v stackStatusView) bool {
		sa, va := v.of(a.ID)
		sb, vb := v.of(b.ID)
		return sa == "running" && sb == "running" && va == 1 && vb == 1
	})
	before := map[uint64][]string{}
	for env, p := range prefixes {
		before[env] = projectContainers(t, cli, p+"web")
		if len(before[env]) != 1 || !strings.HasSuffix(before[env][0], ":running") {
			t.Fatalf("environment %d: containers of the project: %v", env, before[env])
		}
	}

	// An update: both converge to version 2 with a new container.
	srv.do(t, "PUT", fmt.Sprintf("/api/edge-stacks/%d", stack.ID), map[string]any{
		"composeFile": stackCompose(image, "echo v2 ${GREETING} > /tmp/greeting; exec sleep 3600"),
	}, &stack, http.StatusOK)
	if stack.Version != 2 {
		t.Fatalf("version after update: %d", stack.Version)
	}
	waitStatus("both running version 2", func(v stackStatusView) bool {
		sa, va := v.of(a.ID)
		sb, vb := v.of(b.ID)
		return sa == "running" && sb == "running" && va == 2 && vb == 2
	})
	for env, p := range prefixes {
		after := projectContainers(t, cli, p+"web")
		if len(after) != 1 || after[0] == before[env][0] {
			t.Fatalf("environment %d: containers before %v, after the update %v", env, before[env], after)
		}
	}

	// b leaves the group: the stack is removed there and stays on a.
	srv.do(t, "PUT", fmt.Sprintf("/api/edge-groups/%d", group.ID), map[string]any{"name": "shops", "environmentIds": []uint64{a.ID}}, nil, http.StatusOK)
	waitStatus("removed from b", func(v stackStatusView) bool {
		sb, _ := v.of(b.ID)
		return sb == "absent"
	})
	if left := projectContainers(t, cli, prefixes[b.ID]+"web"); len(left) != 0 {
		t.Fatalf("b still has the stack's containers: %v", left)
	}
	if sa, _ := waitStatus("a still running", func(v stackStatusView) bool { s, _ := v.of(a.ID); return s == "running" }).of(a.ID); sa != "running" {
		t.Fatal(sa)
	}
	if got := projectContainers(t, cli, prefixes[a.ID]+"web"); len(got) != 1 {
		t.Fatalf("a's containers after b left: %v", got)
	}
}

// TestAgentKilledDuringDeploy: the agent is killed while Compose deploys; on
// restart it converges without duplicate containers, and the deploy command
// ran once.
func TestAgentKilledDuringDeploy(t *testing.T) {
	cli := testenv.RequireDocker(t)
	image := stackImage(t, cli)
	srv := startServer(t)
	env := srv.createEnvironment(t, "kill-deploy", 1)
	prefix := fmt.Sprintf("k%d-", time.Now().UnixNano()%1_000_000)
	cleanProject(t, cli, prefix+"trio")
	data := t.TempDir()
	agent := startAgent(t, env.EdgeKey, data, "EDGE_STACK_PREFIX="+prefix)
	var group struct {
		ID uint64 `json:"id"`
	}
	srv.do(t, "POST", "/api/edge-groups", map[string]any{"name": "one", "environmentIds": []uint64{env.ID}}, &group, http.StatusCreated)
	var services strings.Builder
	services.WriteString("services:\n")
	names := []string{"one", "two", "three", "four", "five", "six", "seven", "eight"}
	for _, n := range names {
		fmt.Fprintf(&services, "  %s:\n    image: %s\n    command: [\"sleep\", \"3600\"]\n", n, image)
	}
	var stack struct {
		ID uint64 `json:"id"`
	}
	srv.do(t, "POST", "/api/edge-stacks", map[string]any{"name": "trio", "edgeGroupIds": []uint64{group.ID}, "composeFile": services.String()}, &stack, http.StatusCreated)

	// Kill the agent as soon as Compose has made the first container: a
	// tight poll, since Eventually's period is longer than the deploy.
	deadline := time.Now().Add(90 * time.Second)
	for len(projectContainers(t, cli, prefix+"trio")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no container of the stack appeared")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := agent.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = agent.Cmd.Wait()
	atKill := projectContainers(t, cli, prefix+"trio")
	if len(agent.lines("stack deployed")) > 0 {
		t.Fatalf("the deploy finished before the kill (containers %v): the test did not kill mid-deploy", atKill)
	}
	t.Logf("killed during the deploy; containers at the kill: %v", atKill)

	startAgent(t, env.EdgeKey, data, "EDGE_STACK_PREFIX="+prefix)
	var v stackStatusView
	testenv.Eventually(t, 120*time.Second, func() (bool, string) {
		srv.do(t, "GET", fmt.Sprintf("/api/edge-stacks/%d/status", stack.ID), nil, &v, http.StatusOK)
		s, _ := v.of(env.ID)
		return s == "running", fmt.Sprintf("status after restart: %+v", v)
	})
	got := projectContainers(t, cli, prefix+"trio")
	if len(got) != len(names) {
		t.Fatalf("want one container per service (%d), got %v", len(names), got)
	}
	for _, c := range got {
		if !strings.HasSuffix(c, ":running") {
			t.Fatalf("a container is not running after the restart: %v", got)
		}
	}
	var log struct {
		Pending []struct{ Kind string } `json:"pending"`
		Results []struct {
			Kind   string `json:"kind"`
			Status string `json:"status"`
		} `json:"results"`
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		srv.do(t, "GET", fmt.Sprintf("/api/environments/%d/commands", env.ID), nil, &log, http.StatusOK)
		return len(log.Pending) == 0, fmt.Sprintf("command log: %+v", log)
	})
	deploys := 0
	for _, r := range log.Results {
		if r.Kind == "stack.deploy" {
			deploys++
		}
	}
	if deploys != 1 {
		t.Fatalf("stack.deploy results: %d, want 1: %+v", deploys, log.Results)
	}
}

// TestEdgeJob: a cron job runs on the host (the agent runs on this machine,
// so its host root is /), writes a file, and its output reaches the API;
// collect brings the whole log; a deleted job stops running.
func TestEdgeJob(t *testing.T) {
	srv := startServer(t)
	env := srv.createEnvironment(t, "jobs", 1)
	startAgent(t, env.EdgeKey, t.TempDir(), "EDGE_HOST_ROOT=/")
	dir := t.TempDir()
	marker := filepath.Join(dir, "runs")
	script := fmt.Sprintf("echo hello from the job\nfor i in 1 2 3 4 5 6 7 8 9 10; do echo filler line $i; done\ndate >> %s\necho done\n", marker)
	var job struct {
		ID uint64 `json:"id"`
	}
	srv.do(t, "POST", "/api/edge-jobs", map[string]any{
		"name": "marker", "cron": "*/2 * * * * *", "script": script, "environmentIds": []uint64{env.ID}, "collectLogs": true,
	}, &job, http.StatusCreated)
	type run struct {
		Run      uint64 `json:"run"`
		ExitCode int    `json:"exitCode"`
		Output   string `json:"output"`
		Full     bool   `json:"fullLog"`
	}
	var res struct {
		Environments []struct {
			Status string `json:"status"`
		} `json:"environments"`
		Runs []run `json:"runs"`
	}
	path := fmt.Sprintf("/api/edge-jobs/%d/results", job.ID)
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		srv.do(t, "GET", path, nil, &res, http.StatusOK)
		return len(res.Runs) > 0 && res.Runs[0].ExitCode == 0 && strings.Contains(res.Runs[0].Output, "hello from the job"),
			fmt.Sprintf("results: %+v", res)
	})
	if b, err := os.ReadFile(marker); err != nil || len(b) == 0 {
		t.Fatalf("the job did not write its file on the host: %v", err)
	}

	srv.do(t, "POST", fmt.Sprintf("/api/edge-jobs/%d/collect", job.ID), nil, nil, http.StatusAccepted)
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		srv.do(t, "GET", path, nil, &res, http.StatusOK)
		for _, r := range res.Runs {
			if r.Full && strings.Contains(r.Output, "filler line 10") && strings.HasSuffix(r.Output, "done\n") {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no full log yet: %+v", res.Runs)
	})

	srv.do(t, "DELETE", fmt.Sprintf("/api/edge-jobs/%d", job.ID), nil, nil, http.StatusNoContent)
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		srv.do(t, "GET", path, nil, &res, http.StatusOK)
		return len(res.Environments) == 0, fmt.Sprintf("job still targets the environment: %+v", res.Environments)
	})
	stopped, _ := os.ReadFile(marker)
	// The job runs every 2 s; 5 s without a new line shows it stopped.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if now, _ := os.ReadFile(marker); len(now) != len(stopped) {
			t.Fatalf("the deleted job ran again:\n%s", now)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
