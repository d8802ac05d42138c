//go:build integration

package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"outpost/internal/testenv"
)

// listsContainer reports whether a live container list through env's tunnel
// holds a running container named name.
func listsContainer(t *testing.T, srv *server, env uint64, name string) bool {
	t.Helper()
	var list []struct {
		Names []string `json:"Names"`
		State string   `json:"State"`
	}
	srv.do(t, "GET", fmt.Sprintf("/api/environments/%d/docker/containers/json", env), nil, &list, http.StatusOK)
	for _, c := range list {
		if len(c.Names) > 0 && c.Names[0] == "/"+name && c.State == "running" {
			return true
		}
	}
	return false
}

// TestStandardAgentThroughTheWaitingRoom: a standard agent with the onboarding
// key waits as a standard device, stays standard once trusted, and the
// operator reaches its Docker engine live through the tunnel.
func TestStandardAgentThroughTheWaitingRoom(t *testing.T) {
	cli := testenv.RequireDocker(t)
	_, name := startSleeper(t, cli, "outpost-e2e-wr-standard")
	srv := startServer(t)
	srv.do(t, "PUT", "/api/settings/edge", map[string]any{"pollInterval": 1}, nil, http.StatusOK)
	var key struct{ EdgeKey string }
	srv.do(t, "GET", "/api/edge/onboarding-key", nil, &key, http.StatusOK)
	startStandardAgent(t, key.EdgeKey, t.TempDir())

	var room struct {
		Items []struct {
			ID   uint64 `json:"id"`
			Mode string `json:"mode"`
		} `json:"items"`
		Total int `json:"total"`
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		srv.do(t, "GET", "/api/waiting-room", nil, &room, http.StatusOK)
		return room.Total == 1, fmt.Sprintf("waiting room: %+v", room)
	})
	if room.Items[0].Mode != "standard" {
		t.Fatalf("the waiting room shows a standard agent as %q", room.Items[0].Mode)
	}
	var trusted struct {
		Environments []struct {
			ID   uint64 `json:"id"`
			Mode string `json:"mode"`
		} `json:"environments"`
	}
	srv.do(t, "POST", "/api/waiting-room/trust", map[string]any{"ids": []uint64{room.Items[0].ID}}, &trusted, http.StatusOK)
	if len(trusted.Environments) != 1 || trusted.Environments[0].Mode != "standard" {
		t.Fatalf("trusted: %+v, want one standard environment", trusted)
	}
	env := trusted.Environments[0].ID
	// The device learns its environment at its next poll; the tunnel call
	// waits for it.
	openTunnel(t, srv, env)
	if !listsContainer(t, srv, env, name) {
		t.Fatalf("the live container list through the tunnel lacks %s", name)
	}
}

// TestModeSwitch: an operator turns an async environment standard; the
// running agent learns it in its next answer, polls, and opens its tunnel on
// request; a restarted agent keeps the server's mode over EDGE_ASYNC; turned
// async again, the tunnel closes and the agent syncs.
func TestModeSwitch(t *testing.T) {
	cli := testenv.RequireDocker(t)
	_, name := startSleeper(t, cli, "outpost-e2e-mode")
	srv := startServer(t)
	env := srv.createEnvironment(t, "switch", 1)
	dir := t.TempDir()
	agent := startAgent(t, env.EdgeKey, dir)
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		var e environment
		srv.do(t, "GET", fmt.Sprintf("/api/environments/%d", env.ID), nil, &e, http.StatusOK)
		return e.Status == "online", fmt.Sprintf("environment: %+v", e)
	})
	status, body := srv.call(t, "POST", fmt.Sprintf("/api/environments/%d/tunnel", env.ID), nil)
	if status != http.StatusConflict {
		t.Fatalf("tunnel to an async environment: %d %s", status, body)
	}
	srv.do(t, "PATCH", fmt.Sprintf("/api/environments/%d", env.ID), map[string]any{"mode": "bogus"}, nil, http.StatusBadRequest)
	var patched struct {
		Mode string `json:"mode"`
	}
	srv.do(t, "PATCH", fmt.Sprintf("/api/environments/%d", env.ID), map[string]any{"mode": "standard", "frequencies": map[string]int{"ping": 1}}, &patched, http.StatusOK)
	if patched.Mode != "standard" {
		t.Fatalf("PATCH mode: %+v", patched)
	}
	openTunnel(t, srv, env.ID)
	if !listsContainer(t, srv, env.ID, name) {
		t.Fatalf("the live container list through the tunnel lacks %s", name)
	}
	if n := len(agent.lines("the server switched this device's mode")); n != 1 {
		t.Fatalf("agent logged %d mode switches, want 1:\n%s", n, agent.Out.String())
	}

	// Restarted with EDGE_ASYNC=1 still set, it stays standard.
	agent.Stop()
	agent = startAgent(t, env.EdgeKey, dir)
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		return len(agent.lines("running in the mode the server set")) == 1, "restarted agent's mode"
	})
	openTunnel(t, srv, env.ID)

	// Async again: the tunnel goes, the agent syncs.
	srv.do(t, "PATCH", fmt.Sprintf("/api/environments/%d", env.ID), map[string]any{"mode": "async"}, nil, http.StatusOK)
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		return len(agent.lines(`mode=async`)) > 0 && strings.Contains(agent.Out.String(), "the server switched this device's mode"),
			"agent switching back to async"
	})
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		var e struct {
			Tunnel string `json:"tunnel"`
		}
		srv.do(t, "GET", fmt.Sprintf("/api/environments/%d", env.ID), nil, &e, http.StatusOK)
		return e.Tunnel == "", fmt.Sprintf("tunnel of an async environment: %q", e.Tunnel)
	})
	status, body = srv.call(t, "GET", fmt.Sprintf("/api/environments/%d/docker/_ping", env.ID), nil)
	if status == http.StatusOK {
		t.Fatalf("docker through the tunnel of an environment made async: %d %s", status, body)
	}
}
