//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"outpost/internal/testenv"
)

// TestContainerStopThroughTheCommandLog: a stop queued through the API
// reaches the agent at its next command pull, stops the real container, comes
// back as a result, and the next snapshot shows the container stopped.
func TestContainerStopThroughTheCommandLog(t *testing.T) {
	cli := testenv.RequireDocker(t)
	ctx := context.Background()
	createdID, name := startSleeper(t, cli, "outpost-e2e-cmd")

	srv := startServer(t)
	env := srv.createEnvironment(t, "e2e-commands", 1)
	startAgent(t, env.EdgeKey, t.TempDir())
	find := func() string {
		var sv snapshotView
		status, raw := srv.call(t, "GET", fmt.Sprintf("/api/environments/%d/snapshot?section=containers", env.ID), nil)
		if status != http.StatusOK || json.Unmarshal(raw, &sv) != nil {
			return ""
		}
		for _, c := range sv.Section {
			if c.Name == name {
				return c.State
			}
		}
		return ""
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		st := find()
		return st == "running", "container state in the snapshot: " + st
	})

	var cmd struct {
		ID uint64 `json:"id"`
	}
	srv.do(t, "POST", fmt.Sprintf("/api/environments/%d/commands", env.ID), map[string]any{
		"kind": "container.stop", "args": map[string]string{"id": name, "timeout": "1"},
	}, &cmd, http.StatusAccepted)
	srv.do(t, "POST", fmt.Sprintf("/api/environments/%d/commands", env.ID), map[string]any{
		"kind": "container.start", "args": map[string]string{"id": "no-such-container-" + name},
	}, nil, http.StatusAccepted)

	type result struct {
		ID     uint64 `json:"id"`
		Kind   string `json:"kind"`
		Status string `json:"status"`
		Error  string `json:"error"`
	}
	var log struct {
		Pending []result `json:"pending"`
		Results []result `json:"results"`
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		srv.do(t, "GET", fmt.Sprintf("/api/environments/%d/commands", env.ID), nil, &log, http.StatusOK)
		return len(log.Results) == 2 && len(log.Pending) == 0, fmt.Sprintf("command log: %+v", log)
	})
	byKind := map[string]result{}
	for _, r := range log.Results {
		byKind[r.Kind] = r
	}
	if r := byKind["container.stop"]; r.ID != cmd.ID || r.Status != "ok" {
		t.Fatalf("stop result: %+v", r)
	}
	if r := byKind["container.start"]; r.Status != "failed" || r.Error == "" {
		t.Fatalf("a start of a missing container should fail with the engine's error: %+v", r)
	}
	inspect, err := cli.ContainerInspect(ctx, createdID, client.ContainerInspectOptions{})
	if err != nil || inspect.Container.State.Running {
		t.Fatalf("container still running after the stop command: %v", err)
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		st := find()
		return st == "exited", "container state in the snapshot: " + st
	})
}
