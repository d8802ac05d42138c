package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"outpost/protocol"
)

// A standard device placed through the waiting room is shown and trusted as
// standard; an operator can change an environment's mode, and the device is
// told in the answer to its next call to the other mode's endpoint.
func TestModeFromWaitingRoomAndPatch(t *testing.T) {
	s, hs := testServer(t)
	_, admin := addUser(t, s, "admin", RoleAdmin, "correct horse battery")
	d := onboardingDevice(t, hs, "edge-standard")
	d.path = "/edge/v1/poll"
	if status, ans, perr := d.callIn(); status != http.StatusOK || ans.Trust != protocol.TrustWaiting {
		t.Fatalf("first poll: %d %v", status, perr)
	}
	if _, ans, _ := d.callIn(); ans.Freq.Ping != s.edgeSettings().PollInterval {
		t.Fatalf("a waiting standard device is told to call every %d s, want the poll interval %d", ans.Freq.Ping, s.edgeSettings().PollInterval)
	}
	room := listWaiting(t, hs, admin, "")
	if room.Total != 1 || room.Items[0].Mode != "standard" {
		t.Fatalf("waiting room: %+v", room)
	}
	status, body := call(t, hs, "POST", "/api/waiting-room/trust", admin, map[string]any{"ids": []uint64{room.Items[0].ID}})
	var trusted struct {
		Environments []environmentView `json:"environments"`
	}
	if err := json.Unmarshal(body, &trusted); err != nil || status != http.StatusOK || len(trusted.Environments) != 1 {
		t.Fatalf("trust: %d %s", status, body)
	}
	env := trusted.Environments[0]
	if env.Mode != "standard" {
		t.Fatalf("trusted as %q, want standard", env.Mode)
	}
	// Its next poll: a standard answer, no mode change.
	_, ans, perr := d.callIn()
	if ans == nil || ans.EnvID != env.ID || ans.Mode != protocol.ModeUnset {
		t.Fatalf("poll after trust: %+v %v", ans, perr)
	}

	path := fmt.Sprintf("/api/environments/%d", env.ID)
	if status, body := call(t, hs, "PATCH", path, admin, map[string]any{"mode": "satellite"}); status != http.StatusBadRequest {
		t.Fatalf("PATCH a bad mode: %d %s", status, body)
	}
	if status, body := call(t, hs, "PATCH", path, admin, map[string]any{"mode": "async"}); status != http.StatusOK {
		t.Fatalf("PATCH mode async: %d %s", status, body)
	}
	// Still polling: told to switch, and answered as async (no tunnel
	// status, the async frequencies).
	_, ans, _ = d.sync(d.ping())
	if ans.Mode != protocol.ModeAsync || ans.Tunnel != protocol.TunnelIdle || ans.Freq.Snapshot == 0 {
		t.Fatalf("poll to an environment made async: %+v", ans)
	}
	// Switched: its sync gets no mode field.
	d.path = "/edge/v1/sync"
	if _, ans, _ = d.sync(d.ping()); ans.Mode != protocol.ModeUnset {
		t.Fatalf("sync of an async environment: %+v", ans)
	}
	// And back to standard.
	if status, body := call(t, hs, "PATCH", path, admin, map[string]any{"mode": "standard"}); status != http.StatusOK {
		t.Fatalf("PATCH mode standard: %d %s", status, body)
	}
	if _, ans, _ = d.sync(d.ping()); ans.Mode != protocol.ModeStandard || ans.Freq.Ping != s.edgeSettings().PollInterval {
		t.Fatalf("sync to an environment made standard: %+v", ans)
	}
}
