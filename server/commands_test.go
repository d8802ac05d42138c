package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"outpost/protocol"
	"outpost/server/store"
)

type commandLog struct {
	Pending []store.Command `json:"pending"`
	Results []store.Command `json:"results"`
}

func TestCommandLog(t *testing.T) {
	s, hs := testServer(t)
	_, admin := addUser(t, s, "admin", RoleAdmin, "correct horse battery")
	_, reader := addUser(t, s, "reader", RoleReadOnly, "correct horse battery")
	env := stage(t, s, &protocol.Frequencies{Command: 3600})
	dev := newDevice(t, hs.Config.Handler, env, "edge-1")
	if status, _, perr := dev.sync(dev.firstContact()); status != http.StatusOK {
		t.Fatal(perr)
	}
	path := fmt.Sprintf("/api/environments/%d/commands", env)

	// Bad commands are refused, every problem named at once.
	status, body := call(t, hs, "POST", path, admin, map[string]any{"kind": "container.stop", "args": map[string]string{"timeout": "soon", "colour": "red"}})
	if status != http.StatusBadRequest || !strings.Contains(string(body), "args.id: required") ||
		!strings.Contains(string(body), "args.timeout") || !strings.Contains(string(body), "args.colour") {
		t.Fatalf("bad command: %d %s", status, body)
	}
	if status, _ := call(t, hs, "POST", path, admin, map[string]any{"kind": "rm -rf"}); status != http.StatusBadRequest {
		t.Fatalf("unknown kind: %d", status)
	}
	if status, _ := call(t, hs, "POST", path, reader, map[string]any{"kind": "snapshot.now"}); status != http.StatusForbidden {
		t.Fatalf("read-only user queued a command: %d", status)
	}
	var ids []uint64
	for _, c := range []map[string]any{
		{"kind": "container.stop", "args": map[string]string{"id": "web", "timeout": "5"}},
		{"kind": "volume.remove", "args": map[string]string{"name": "old-data"}},
	} {
		status, body := call(t, hs, "POST", path, admin, c)
		var got store.Command
		if status != http.StatusAccepted || json.Unmarshal(body, &got) != nil || got.Status != "pending" {
			t.Fatalf("queue %v: %d %s", c, status, body)
		}
		ids = append(ids, got.ID)
	}
	if ids[1] <= ids[0] {
		t.Fatalf("command IDs do not increase: %v", ids)
	}

	// A ping that does not pull commands gets none.
	if _, ans, _ := dev.sync(dev.ping()); len(ans.Commands) != 0 {
		t.Fatalf("commands without a pull: %+v", ans.Commands)
	}
	pull := func() *protocol.SyncRequest {
		r := dev.ping()
		r.Include |= protocol.IncludeCommands
		return r
	}
	_, ans, _ := dev.sync(pull())
	if len(ans.Commands) != 2 || ans.Commands[0].ID != ids[0] || ans.Commands[0].Kind != "container.stop" || ans.Commands[0].Args["timeout"] != "5" {
		t.Fatalf("first pull: %+v", ans.Commands)
	}
	// The command frequency (an hour here) holds back a second pull.
	if _, ans, _ := dev.sync(pull()); len(ans.Commands) != 0 {
		t.Fatalf("second pull within the command interval: %+v", ans.Commands)
	}

	// Acks move commands to the results; a duplicate ack changes nothing.
	ack := dev.ping()
	ack.Acks = []protocol.CommandAck{
		{ID: ids[0], Status: protocol.StatusOK, Finished: 1_800_000_000},
		{ID: ids[1], Status: protocol.StatusFailed, Error: "Error: No such volume: old-data", Finished: 1_800_000_001},
	}
	for range 2 {
		if status, _, perr := dev.sync(ack); status != http.StatusOK {
			t.Fatal(perr)
		}
		ack = &protocol.SyncRequest{Version: protocol.Version, EnvID: env, Include: protocol.IncludePing, Acks: ack.Acks}
	}
	var log commandLog
	status, body = call(t, hs, "GET", path, reader, nil)
	if status != http.StatusOK || json.Unmarshal(body, &log) != nil {
		t.Fatalf("command log: %d %s", status, body)
	}
	if len(log.Pending) != 0 || len(log.Results) != 2 || log.Results[0].ID != ids[1] || log.Results[0].Status != "failed" ||
		log.Results[0].Error != "Error: No such volume: old-data" || log.Results[1].Status != "ok" || log.Results[1].By != "admin" {
		t.Fatalf("command log after acks: %+v", log)
	}
	// Acked commands are not sent again.
	s.releases.last = nil
	if _, ans, _ := dev.sync(pull()); len(ans.Commands) != 0 {
		t.Fatalf("acked commands sent again: %+v", ans.Commands)
	}
}

func TestCommandsWaitForTrust(t *testing.T) {
	_, hs := testServer(t)
	dev := onboardingDevice(t, hs, "waiting-1")
	req := dev.firstContact()
	req.Include |= protocol.IncludeCommands
	if _, ans, _ := dev.sync(req); ans.Trust != protocol.TrustWaiting || len(ans.Commands) != 0 {
		t.Fatalf("a waiting device got %+v", ans)
	}
}

// Numbers and booleans may be given as JSON numbers and booleans; the device
// gets them as the strings it always got, and a value of the wrong type is
// named with every other problem.
func TestCommandArgsTyped(t *testing.T) {
	s, hs := testServer(t)
	_, admin := addUser(t, s, "admin", RoleAdmin, "correct horse battery")
	env := stage(t, s, &protocol.Frequencies{Command: 60})
	path := fmt.Sprintf("/api/environments/%d/commands", env)

	for _, c := range []struct {
		body map[string]any
		want map[string]string
	}{
		{map[string]any{"kind": "container.stop", "args": map[string]any{"id": "web", "timeout": 1}}, map[string]string{"id": "web", "timeout": "1"}},
		{map[string]any{"kind": "container.remove", "args": map[string]any{"id": "web", "force": true, "volumes": false}}, map[string]string{"id": "web", "force": "true", "volumes": "false"}},
		{map[string]any{"kind": "container.restart", "args": map[string]any{"id": "web", "timeout": "30"}}, map[string]string{"id": "web", "timeout": "30"}},
		{map[string]any{"kind": "image.remove", "args": map[string]any{"id": "busybox", "force": "true"}}, map[string]string{"id": "busybox", "force": "true"}},
	} {
		status, body := call(t, hs, "POST", path, admin, c.body)
		var got store.Command
		if status != http.StatusAccepted || json.Unmarshal(body, &got) != nil {
			t.Fatalf("queue %v: %d %s", c.body, status, body)
		}
		if fmt.Sprint(got.Args) != fmt.Sprint(c.want) {
			t.Errorf("queue %v: args %v, want %v", c.body, got.Args, c.want)
		}
	}

	status, body := call(t, hs, "POST", path, admin, map[string]any{"kind": "container.remove",
		"args": map[string]any{"id": 7, "force": 1, "volumes": "yes"}})
	var e struct{ Error string }
	_ = json.Unmarshal(body, &e)
	body = []byte(e.Error)
	for _, want := range []string{"args.id 7: a string", "args.force 1: true or false", `args.volumes "yes": true or false`} {
		if status != http.StatusBadRequest || !strings.Contains(string(body), want) {
			t.Errorf("bad types: %d %s, want %q", status, body, want)
		}
	}
	if strings.Contains(string(body), "args.id: required") {
		t.Errorf("a mistyped id is also called missing: %s", body)
	}
	for _, bad := range []any{1.5, -1, 3601, true, []int{1}} {
		status, body := call(t, hs, "POST", path, admin, map[string]any{"kind": "container.stop", "args": map[string]any{"id": "web", "timeout": bad}})
		if status != http.StatusBadRequest || !strings.Contains(string(body), "seconds, 0 to 3600") {
			t.Errorf("timeout %v: %d %s", bad, status, body)
		}
	}
	// Nothing refused was queued.
	status, body = call(t, hs, "GET", path, admin, nil)
	var log commandLog
	if status != http.StatusOK || json.Unmarshal(body, &log) != nil || len(log.Pending) != 4 {
		t.Fatalf("queued: %d %s", status, body)
	}
}
