package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

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
		TrustOnFirstConnect: true, PreauthorizedEdgeIDs: []string{"edge-9 SHA256:" + strings.Repeat("B", 43)},
		PreauthorizedKeys: []string{"SHA256:" + strings.Repeat("A", 43)}, WaitingRoomMax: 5, NewDevicesPerMinute: 2,
	}
	if status, body := call(t, hs, "PUT", "/api/settings/edge", ro, want); status != http.StatusForbidden {
		t.Fatalf("read-only PUT: %d %s", status, body)
	}
	if status, body := call(t, hs, "PUT", "/api/settings/edge", tok, want); status != http.StatusOK {
		t.Fatalf("PUT: %d %s", status, body)
	}
	if e := s.edgeSettings(); e.WaitingRoomMax != 5 || !e.TrustOnFirstConnect || e.PreauthorizedEdgeIDs[0] != want.PreauthorizedEdgeIDs[0] {
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

// One rule gives every environment its frequencies, in either mode: field by
// field its own when not 0, else the server's default for its mode (the
// global frequencies; a standard one's ping and command: the poll interval).
// The API, the answer to the device's call and the status filter agree.
func TestFrequenciesOneRuleInBothModes(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	apiJSON(t, hs, "PUT", "/api/settings/edge", tok, map[string]any{
		"frequencies": map[string]uint32{"ping": 90, "snapshot": 400, "command": 70}, "pollInterval": 7}, nil, http.StatusOK)
	cases := []struct {
		mode string
		own  map[string]uint32
		want protocol.Frequencies
	}{
		{"standard", map[string]uint32{"ping": 5}, protocol.Frequencies{Ping: 5, Snapshot: 400, Command: 7}},
		{"standard", nil, protocol.Frequencies{Ping: 7, Snapshot: 400, Command: 7}},
		{"standard", map[string]uint32{"snapshot": 600, "command": 30}, protocol.Frequencies{Ping: 7, Snapshot: 600, Command: 30}},
		{"async", map[string]uint32{"ping": 5}, protocol.Frequencies{Ping: 5, Snapshot: 400, Command: 70}},
		{"async", map[string]uint32{"ping": 0, "command": 0}, protocol.Frequencies{Ping: 90, Snapshot: 400, Command: 70}},
	}
	start := time.Unix(1_800_000_000, 0)
	now := start
	s.now = func() time.Time { return now }
	for i, tc := range cases {
		body := map[string]any{"name": fmt.Sprintf("env-%d", i), "mode": tc.mode}
		if tc.own != nil {
			body["frequencies"] = tc.own
		}
		var v createdEnvironment
		apiJSON(t, hs, "POST", "/api/environments", tok, body, &v, http.StatusCreated)
		if v.Effective != tc.want {
			t.Errorf("%s %v: effective %+v, want %+v", tc.mode, tc.own, v.Effective, tc.want)
		}
		now = start
		d := keyDevice(t, hs.Config.Handler, v.EdgeKey, fmt.Sprintf("edge-%d", i))
		if tc.mode == "standard" {
			d.path = "/edge/v1/poll"
		}
		status, ans, perr := d.sync(d.firstContact())
		if status != http.StatusOK || ans.Freq == nil || *ans.Freq != tc.want {
			t.Fatalf("%s %v: the device is told %d %+v %v, want %+v", tc.mode, tc.own, status, ans, perr, tc.want)
		}
		// Online for two ping intervals and 30 s: its own ping, not another
		// mode's default, decides the status and the status filter.
		path := fmt.Sprintf("/api/environments?status=online&name=env-%d", i)
		for _, c := range []struct {
			after time.Duration
			n     int
		}{{time.Duration(2*tc.want.Ping+29) * time.Second, 1}, {time.Duration(2*tc.want.Ping+31) * time.Second, 0}} {
			now = start.Add(c.after)
			var page struct {
				Total int `json:"total"`
			}
			apiJSON(t, hs, "GET", path, tok, nil, &page, http.StatusOK)
			apiJSON(t, hs, "GET", fmt.Sprintf("/api/environments/%d", v.ID), tok, nil, &v, http.StatusOK)
			if online := v.Status == "online"; page.Total != c.n || online != (c.n == 1) {
				t.Errorf("%s %v, %v after its call: status %s, %d in ?status=online, want %d", tc.mode, tc.own, c.after, v.Status, page.Total, c.n)
			}
		}
	}
}
