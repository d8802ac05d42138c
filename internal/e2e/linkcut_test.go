//go:build integration

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/moby/moby/client"
	"github.com/rs/zerolog"

	"outpost/internal/testenv"
)

// TestCommandsSurviveALinkCut: the agent reaches the server through a
// toxiproxy proxy (the edge key's public URL points at it). With the link cut,
// three container commands queued through the API, an edge stack and an edge
// job stay pending while the agent's syncs fail; once the link is back, each
// command runs exactly once (the container ones in order) and comes back as
// an ok result, the stack's status reaches running and the job's results
// arrive.
func TestCommandsSurviveALinkCut(t *testing.T) {
	cli := testenv.RequireDocker(t)
	ctx := context.Background()
	createdID, name := startSleeper(t, cli, "outpost-e2e-linkcut")
	startedAt := func() (bool, time.Time) {
		t.Helper()
		in, err := cli.ContainerInspect(ctx, createdID, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		at, err := time.Parse(time.RFC3339Nano, in.Container.State.StartedAt)
		if err != nil {
			t.Fatalf("container StartedAt %q: %v", in.Container.State.StartedAt, err)
		}
		return in.Container.State.Running, at
	}
	_, firstStart := startedAt()

	// The link: agent -> proxy -> server. The server binds a fixed port so
	// the proxy can forward to it; the edge key names the proxy.
	bind, listen := freeAddr(t), freeAddr(t)
	tp := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	link := toxiproxy.NewProxy(tp, "agent-server", listen, bind)
	if err := link.Start(); err != nil {
		t.Fatalf("start proxy: %v", err)
	}
	t.Cleanup(link.Stop)
	_, port, _ := net.SplitHostPort(listen)
	srv := startServer(t, "--bind", bind, "--public-url", "https://localhost:"+port)
	// startServer took the logged (public) URL; the API goes direct.
	srv.URL = "https://" + bind

	env := srv.createEnvironment(t, "e2e-linkcut", 1)
	agent := startAgent(t, env.EdgeKey, t.TempDir())
	// Online is not enough: the server counts a check-in whose answer may
	// still be on its way. Wait until the agent has the answer (it is bound
	// and has the 1 s frequencies).
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		var e environment
		srv.do(t, "GET", fmt.Sprintf("/api/environments/%d", env.ID), nil, &e, http.StatusOK)
		bound := len(agent.lines("bound to the server")) > 0
		return e.Status == "online" && bound, fmt.Sprintf("environment %+v, agent bound: %v", e, bound)
	})

	// Cut the link: the listener closes and open connections drop. Wait
	// for the agent to notice before queueing, so nothing can slip through.
	failedBefore := len(agent.lines("sync failed"))
	link.Stop()
	cutAt := time.Now()
	testenv.Eventually(t, 15*time.Second, func() (bool, string) {
		return len(agent.lines("sync failed")) > failedBefore, "no sync failure logged since the cut"
	})

	kinds := []string{"container.stop", "container.start", "container.restart"}
	ids := map[uint64]string{}
	for _, k := range kinds {
		args := map[string]string{"id": name}
		if k != "container.start" {
			args["timeout"] = "1"
		}
		var c struct {
			ID uint64 `json:"id"`
		}
		srv.do(t, "POST", fmt.Sprintf("/api/environments/%d/commands", env.ID), map[string]any{"kind": k, "args": args}, &c, http.StatusAccepted)
		ids[c.ID] = k
	}
	// A stack and a job for the environment too: their commands wait with
	// the others, and their statuses and results must arrive afterwards.
	image := stackImage(t, cli)
	project := fmt.Sprintf("lc%d", time.Now().UnixNano()%1_000_000)
	cleanProject(t, cli, project)
	var group, stack, job struct {
		ID uint64 `json:"id"`
	}
	srv.do(t, "POST", "/api/edge-groups", map[string]any{"name": "cut", "environmentIds": []uint64{env.ID}}, &group, http.StatusCreated)
	srv.do(t, "POST", "/api/edge-stacks", map[string]any{
		"name": project, "edgeGroupIds": []uint64{group.ID},
		"composeFile": stackCompose(image, "echo up > /tmp/greeting; exec sleep 3600"),
	}, &stack, http.StatusCreated)
	srv.do(t, "POST", "/api/edge-jobs", map[string]any{
		"name": "cut", "cron": "*/2 * * * * *", "script": "echo linkcut job\n", "environmentIds": []uint64{env.ID}, "collectLogs": true,
	}, &job, http.StatusCreated)
	isWork := map[string]bool{"stack.deploy": true, "job.upsert": true}

	type result struct {
		ID       uint64 `json:"id"`
		Kind     string `json:"kind"`
		Status   string `json:"status"`
		Error    string `json:"error"`
		Finished int64  `json:"finished"`
	}
	var log struct {
		Pending []result `json:"pending"`
		Results []result `json:"results"`
	}
	commands := func() {
		t.Helper()
		srv.do(t, "GET", fmt.Sprintf("/api/environments/%d/commands", env.ID), nil, &log, http.StatusOK)
	}

	// Several command periods with the link down: nothing moves.
	time.Sleep(time.Until(cutAt.Add(6 * time.Second)))
	commands()
	if len(log.Pending) != 5 || len(log.Results) != 0 {
		t.Fatalf("with the link cut, want 5 pending (3 container commands, a stack deploy, a job) and no results: %+v", log)
	}
	for _, p := range log.Pending {
		if isWork[p.Kind] {
			ids[p.ID] = p.Kind
		}
		if ids[p.ID] != p.Kind || p.Status != "pending" {
			t.Fatalf("pending %+v, queued %v", p, ids)
		}
	}
	if running, at := startedAt(); !running || !at.Equal(firstStart) {
		t.Fatalf("the container was touched during the cut: running %v, started %v (first %v)", running, at, firstStart)
	}
	failures := len(agent.lines("sync failed")) - failedBefore
	if failures < 2 {
		t.Errorf("%d sync failures logged in %v of cut, want several", failures, time.Since(cutAt).Round(time.Millisecond))
	}

	// Restore the link.
	if err := link.Start(); err != nil {
		t.Fatalf("restart proxy: %v", err)
	}
	restoredAt := time.Now()
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		commands()
		return len(log.Results) == 5 && len(log.Pending) == 0, fmt.Sprintf("command log: %+v", log)
	})
	t.Logf("commands done %v after the link came back (cut for %v, %d sync failures)",
		time.Since(restoredAt).Round(time.Millisecond), restoredAt.Sub(cutAt).Round(time.Millisecond), failures)

	seen := map[uint64]bool{}
	for _, r := range log.Results {
		if seen[r.ID] {
			t.Errorf("result %d reported twice: %+v", r.ID, log.Results)
		}
		seen[r.ID] = true
		if ids[r.ID] != r.Kind || r.Status != "ok" || r.Error != "" {
			t.Errorf("result %+v, queued %v", r, ids)
		}
	}
	// Results come newest first: restart, start, stop.
	var container []result
	for _, r := range log.Results {
		if !isWork[r.Kind] {
			container = append(container, r)
		}
	}
	for i, r := range container {
		if want := kinds[len(kinds)-1-i]; r.Kind != want {
			t.Errorf("result %d is %s, want %s: %+v", i, r.Kind, want, container)
		}
	}
	// The stack's status and the job's results arrive too.
	testenv.Eventually(t, 90*time.Second, func() (bool, string) {
		var v stackStatusView
		srv.do(t, "GET", fmt.Sprintf("/api/edge-stacks/%d/status", stack.ID), nil, &v, http.StatusOK)
		var res struct {
			Runs []struct {
				ExitCode int    `json:"exitCode"`
				Output   string `json:"output"`
			} `json:"runs"`
		}
		srv.do(t, "GET", fmt.Sprintf("/api/edge-jobs/%d/results", job.ID), nil, &res, http.StatusOK)
		st, _ := v.of(env.ID)
		ran := len(res.Runs) > 0 && res.Runs[0].ExitCode == 0 && res.Runs[0].Output == "linkcut job\n"
		return st == "running" && ran, fmt.Sprintf("stack %s, job runs %+v", st, res.Runs)
	})
	if running, at := startedAt(); !running || !at.After(restoredAt) {
		t.Errorf("after stop, start, restart the container should run, started after the link came back (%v): running %v, started %v",
			restoredAt, running, at)
	}
	if errs := agent.lines("level=ERROR"); len(errs) > 0 {
		t.Errorf("agent logged errors: %v", errs)
	}
}
