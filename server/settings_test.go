package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"outpost/protocol"
	"outpost/scheduler"
)

func TestEdgeSettingsReachTheNextSync(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	_, ro := addUser(t, s, "viewer", RoleReadOnly, "pw")

	status, body := call(t, hs, "GET", "/api/settings/edge", ro, nil)
	var got EdgeSettings
	if status != http.StatusOK || json.Unmarshal(body, &got) != nil {
		t.Fatalf("GET: %d %s", status, body)
	}
	if got.Frequencies != scheduler.Defaults || got.PollInterval != 5 || got.TrustOnFirstConnect || got.WaitingRoomMax != 1000 || got.NewDevicesPerMinute != 10 {
		t.Fatalf("defaults = %+v", got)
	}

	env := stage(t, s, &protocol.Frequencies{Snapshot: 77})
	dev := newDevice(t, hs.Config.Handler, env, "edge-1")
	if status, ans, perr := dev.sync(dev.firstContact()); status != 200 || ans.Freq.Ping != scheduler.Defaults.Ping {
		t.Fatalf("first contact: %d %+v %+v", status, perr, ans)
	}

	want := EdgeSettings{
		Frequencies: protocol.Frequencies{Ping: 11, Snapshot: 22, Command: 33}, PollInterval: 9,
		TrustOnFirstConnect: true, PreauthorizedEdgeIDs: []string{"edge-9"},
		PreauthorizedKeys: []string{"SHA256:" + strings.Repeat("A", 43)}, WaitingRoomMax: 5, NewDevicesPerMinute: 2,
	}
	if status, body := call(t, hs, "PUT", "/api/settings/edge", ro, want); status != http.StatusForbidden {
		t.Fatalf("read-only PUT: %d %s", status, body)
	}
	if status, body := call(t, hs, "PUT", "/api/settings/edge", tok, want); status != http.StatusOK {
		t.Fatalf("PUT: %d %s", status, body)
	}
	if e := s.edgeSettings(); e.WaitingRoomMax != 5 || !e.TrustOnFirstConnect || e.PreauthorizedEdgeIDs[0] != "edge-9" {
		t.Fatalf("cached settings = %+v", e)
	}
	// The environment's own override (snapshot 77) still wins.
	status, ans, perr := dev.sync(dev.ping())
	if status != 200 || *ans.Freq != (protocol.Frequencies{Ping: 11, Snapshot: 77, Command: 33}) {
		t.Fatalf("sync after PUT: %d %+v %+v", status, perr, ans.Freq)
	}
	// The store holds it: a fresh cache reads the same.
	s.settings.edge.Store(nil)
	if e := s.edgeSettings(); e.Frequencies != want.Frequencies || e.PollInterval != 9 {
		t.Fatalf("reloaded settings = %+v", e)
	}
	if !auditHas(t, s, auditSettingsUpdate, "settings edge") {
		t.Error("settings change not audited")
	}
}

func TestEdgeSettingsValidation(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	bad := map[string]any{
		"frequencies":         map[string]int{"ping": 604801, "snapshot": 1, "command": 1},
		"pollInterval":        3601,
		"waitingRoomMax":      -1,
		"newDevicesPerMinute": -3,
		"preauthorizedKeys":   []string{"MD5:aa", "SHA256:short"},
	}
	status, body := call(t, hs, "PUT", "/api/settings/edge", tok, bad)
	if status != http.StatusBadRequest {
		t.Fatalf("PUT: %d %s", status, body)
	}
	for _, want := range []string{"frequencies.ping 604801", "pollInterval 3601", "waitingRoomMax -1", "newDevicesPerMinute -3", `MD5:aa`, `SHA256:short`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("error %s does not mention %s", body, want)
		}
	}
	if e := s.edgeSettings(); e.PollInterval != 5 {
		t.Fatalf("a refused PUT changed the settings: %+v", e)
	}
}

// auditHas reports whether the audit log holds an entry of action on target.
func auditHas(t *testing.T, s *Server, action, target string) bool {
	t.Helper()
	entries, err := s.store.Audit(0, 1000, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Action == action && e.Target == target {
			return true
		}
	}
	return false
}
