//go:build integration

package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"outpost/internal/testenv"
)

// TestOnboardingThroughTheWaitingRoom: an agent started with the onboarding
// key waits, unseen by the snapshot API, until an operator trusts it; then it
// becomes an environment and its snapshot arrives.
func TestOnboardingThroughTheWaitingRoom(t *testing.T) {
	testenv.RequireDocker(t)
	srv := startServer(t)
	srv.do(t, "PUT", "/api/settings/edge", map[string]any{
		"frequencies": map[string]int{"ping": 1, "snapshot": 1, "command": 1},
	}, nil, http.StatusOK)
	var key struct{ EdgeKey string }
	srv.do(t, "GET", "/api/edge/onboarding-key", nil, &key, http.StatusOK)
	startAgent(t, key.EdgeKey, t.TempDir())

	type waiting struct {
		ID       uint64 `json:"id"`
		EdgeID   string `json:"edgeId"`
		Hostname string `json:"hostname"`
	}
	var room struct {
		Items []waiting `json:"items"`
		Total int       `json:"total"`
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		srv.do(t, "GET", "/api/waiting-room", nil, &room, http.StatusOK)
		return room.Total == 1, fmt.Sprintf("waiting room: %+v", room)
	})
	var trusted struct {
		Environments []environment `json:"environments"`
	}
	srv.do(t, "POST", "/api/waiting-room/trust", map[string]any{"ids": []uint64{room.Items[0].ID}}, &trusted, http.StatusOK)
	if len(trusted.Environments) != 1 || trusted.Environments[0].EdgeID != room.Items[0].EdgeID {
		t.Fatalf("trusted: %+v", trusted)
	}
	env := trusted.Environments[0]
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		status, body := srv.call(t, "GET", fmt.Sprintf("/api/environments/%d/snapshot?section=engine", env.ID), nil)
		return status == http.StatusOK, fmt.Sprintf("snapshot of environment %d: %d %s", env.ID, status, body)
	})
	srv.do(t, "GET", "/api/waiting-room", nil, &room, http.StatusOK)
	if room.Total != 0 {
		t.Fatalf("the trusted device still waits: %+v", room)
	}
}
