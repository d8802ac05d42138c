package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"outpost/protocol"
	"outpost/server/store"
	"outpost/snapshot"
)

// apiJSON calls the API and decodes a 2xx answer into out (if not nil).
func apiJSON(t *testing.T, hs *httptest.Server, method, path, tok string, body, out any, want int) {
	t.Helper()
	status, b := call(t, hs, method, path, tok, body)
	if status != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, status, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

func TestCreateEnvironmentPrintsDockerRun(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	for _, mode := range []string{store.ModeAsync, store.ModeStandard} {
		var e createdEnvironment
		apiJSON(t, hs, "POST", "/api/environments", tok, map[string]any{"name": "d-" + mode, "mode": mode}, &e, http.StatusCreated)
		want := "docker run -d --name outpost-agent --restart always -v /var/run/docker.sock:/var/run/docker.sock -v /:/host -v outpost_agent_data:/data -e EDGE=1"
		if mode == store.ModeAsync {
			want += " -e EDGE_ASYNC=1"
		}
		want += " -e EDGE_KEY=" + e.EdgeKey + " -e EDGE_INSECURE_POLL=1 outpost/agent:local"
		if e.EdgeKey == "" || e.DockerRun != want {
			t.Errorf("%s: dockerRun\n got %s\nwant %s", mode, e.DockerRun, want)
		}
		if len(e.Warnings) != 0 {
			t.Errorf("%s: warnings for a public URL devices can reach: %v", mode, e.Warnings)
		}
	}
	// A loopback public URL: the answer says the line cannot work from a
	// container, and what to do.
	s.url = "https://localhost:9443"
	var e createdEnvironment
	apiJSON(t, hs, "POST", "/api/environments", tok, map[string]any{"name": "loop"}, &e, http.StatusCreated)
	if len(e.Warnings) != 1 || !strings.Contains(e.Warnings[0], "--public-url") {
		t.Fatalf("warnings for a loopback public URL: %v", e.Warnings)
	}
}

// TestCreateKubernetesEnvironment: platform kubernetes answers the install
// manifest with the edge key in it, and no docker run line; the platform is
// kept; an unknown platform is refused with nothing stored.
func TestCreateKubernetesEnvironment(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	var e createdEnvironment
	apiJSON(t, hs, "POST", "/api/environments", tok, map[string]any{"name": "cluster-1", "mode": "async", "platform": "kubernetes"}, &e, http.StatusCreated)
	if e.DockerRun != "" || !strings.Contains(e.KubernetesManifest, "EDGE_KEY: \""+e.EdgeKey+"\"") ||
		!strings.Contains(e.KubernetesManifest, "name: EDGE_ASYNC") || !strings.Contains(e.KubernetesManifest, "name: cluster-admin") {
		t.Fatalf("kubernetes environment: dockerRun %q, manifest\n%s", e.DockerRun, e.KubernetesManifest)
	}
	if stored, err := s.store.Environment(e.ID); err != nil || stored.Platform != "kubernetes" {
		t.Fatalf("stored platform: %+v %v", stored, err)
	}
	// Its key re-issued: the manifest again, with the new key.
	var again createdEnvironment
	apiJSON(t, hs, "POST", fmt.Sprintf("/api/environments/%d/edge-key", e.ID), tok, nil, &again, http.StatusOK)
	if again.DockerRun != "" || !strings.Contains(again.KubernetesManifest, again.EdgeKey) || again.EdgeKey == e.EdgeKey {
		t.Fatalf("re-issued key: dockerRun %q, manifest has the new key: %v", again.DockerRun, strings.Contains(again.KubernetesManifest, again.EdgeKey))
	}
	before, _ := s.store.Environments()
	status, body := call(t, hs, "POST", "/api/environments", tok, map[string]any{"name": "x", "platform": "nomad"})
	if after, _ := s.store.Environments(); status != http.StatusBadRequest || !strings.Contains(string(body), "want docker or kubernetes") || len(after) != len(before) {
		t.Fatalf("platform nomad: %d %s", status, body)
	}
}

func TestPatchAndDeleteEnvironment(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	_, helpdesk := addUser(t, s, "help", RoleHelpdesk, "pw")
	var tag store.Tag
	apiJSON(t, hs, "POST", "/api/tags", tok, map[string]string{"name": "ship"}, &tag, http.StatusCreated)
	var grp store.EnvironmentGroup
	apiJSON(t, hs, "POST", "/api/environment-groups", tok, map[string]string{"name": "north sea"}, &grp, http.StatusCreated)
	var e createdEnvironment
	apiJSON(t, hs, "POST", "/api/environments", tok, map[string]any{"name": "vessel"}, &e, http.StatusCreated)
	path := fmt.Sprintf("/api/environments/%d", e.ID)

	if status, _ := call(t, hs, "PATCH", path, helpdesk, map[string]any{"name": "x"}); status != http.StatusForbidden {
		t.Fatalf("helpdesk PATCH: %d", status)
	}
	// Every problem at once.
	status, body := call(t, hs, "PATCH", path, tok, map[string]any{"name": " ", "tagIds": []uint64{99}, "groupId": 98, "frequencies": map[string]int{"ping": 700000}})
	if status != http.StatusBadRequest || !strings.Contains(string(body), "name") || !strings.Contains(string(body), "[99]") || !strings.Contains(string(body), "98") || !strings.Contains(string(body), "700000") {
		t.Fatalf("bad PATCH: %d %s", status, body)
	}

	var v environmentView
	apiJSON(t, hs, "PATCH", path, tok, map[string]any{
		"name": "vessel 7", "tagIds": []uint64{tag.ID}, "groupId": grp.ID, "frequencies": map[string]int{"ping": 600},
	}, &v, http.StatusOK)
	if v.Name != "vessel 7" || !slices.Equal(v.TagIDs, []uint64{tag.ID}) || v.GroupID != grp.ID || v.Effective.Ping != 600 || v.Effective.Snapshot != 300 {
		t.Fatalf("after PATCH: %+v", v)
	}
	// A device syncing gets the override; 0 brings back the default.
	dev := keyDevice(t, hs.Config.Handler, e.EdgeKey, "edge-1")
	if _, ans, perr := dev.sync(dev.firstContact()); ans == nil || ans.Freq.Ping != 600 {
		t.Fatalf("sync: %+v %+v", ans, perr)
	}
	v = environmentView{}
	apiJSON(t, hs, "PATCH", path, tok, map[string]any{"frequencies": map[string]int{}}, &v, http.StatusOK)
	if v.Frequencies != nil || v.Effective.Ping != 60 || v.Name != "vessel 7" {
		t.Fatalf("after reset: %+v", v)
	}
	if !auditHas(t, s, auditEnvUpdate, envTarget(e.ID)) {
		t.Error("update not audited")
	}

	// Delete takes the snapshot and history with it.
	full := testSnapshot(2, snapshot.StateRunning)
	if status, _, perr := dev.sync(&protocol.SyncRequest{Version: protocol.Version, EnvID: e.ID, Include: protocol.IncludeSnapshot, Snapshot: push(t, 1, 0, full, full)}); status != 200 {
		t.Fatal(perr)
	}
	apiJSON(t, hs, "DELETE", path, tok, nil, nil, http.StatusNoContent)
	apiJSON(t, hs, "GET", path, tok, nil, nil, http.StatusNotFound)
	apiJSON(t, hs, "DELETE", path, tok, nil, nil, http.StatusNotFound)
	if _, err := s.store.Snapshot(e.ID); err == nil {
		t.Error("snapshot survived the environment")
	}
	if h, _ := s.store.History(e.ID); len(h) != 0 {
		t.Errorf("history survived the environment: %d entries", len(h))
	}
	if status, _, _ := dev.sync(dev.ping()); status != http.StatusNotFound {
		t.Errorf("device of a deleted environment: %d", status)
	}
	if !auditHas(t, s, auditEnvDelete, envTarget(e.ID)) {
		t.Error("delete not audited")
	}
	var page environmentPage
	apiJSON(t, hs, "GET", "/api/environments", tok, nil, &page, http.StatusOK)
	if page.Total != 0 || len(page.Items) != 0 {
		t.Fatalf("list after delete: %+v", page)
	}
}

func TestListEnvironmentsFiltersSortsPages(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	var tag store.Tag
	apiJSON(t, hs, "POST", "/api/tags", tok, map[string]string{"name": "gpu"}, &tag, http.StatusCreated)
	var grp store.EnvironmentGroup
	apiJSON(t, hs, "POST", "/api/environment-groups", tok, map[string]string{"name": "g"}, &grp, http.StatusCreated)
	names := []string{"delta", "Alpha", "charlie", "bravo", "echo"}
	ids := map[string]uint64{}
	for i, n := range names {
		mode := store.ModeAsync
		if i%2 == 1 {
			mode = store.ModeStandard
		}
		var e createdEnvironment
		apiJSON(t, hs, "POST", "/api/environments", tok, map[string]any{"name": n, "mode": mode}, &e, http.StatusCreated)
		ids[n] = e.ID
	}
	apiJSON(t, hs, "PATCH", fmt.Sprintf("/api/environments/%d", ids["bravo"]), tok, map[string]any{"tagIds": []uint64{tag.ID}, "groupId": grp.ID}, nil, http.StatusOK)
	apiJSON(t, hs, "PATCH", fmt.Sprintf("/api/environments/%d", ids["echo"]), tok, map[string]any{"tagIds": []uint64{tag.ID}}, nil, http.StatusOK)
	now := s.now().Unix()
	s.checkins.touch(ids["charlie"], now-5, 1000)
	s.checkins.touch(ids["delta"], now-100000, 1000)

	list := func(q string) ([]string, int) {
		t.Helper()
		var page environmentPage
		apiJSON(t, hs, "GET", "/api/environments?"+q, tok, nil, &page, http.StatusOK)
		var out []string
		for _, e := range page.Items {
			out = append(out, e.Name)
		}
		return out, page.Total
	}
	for _, c := range []struct {
		q     string
		want  []string
		total int
	}{
		{"", []string{"delta", "Alpha", "charlie", "bravo", "echo"}, 5},
		{"sort=name", []string{"Alpha", "bravo", "charlie", "delta", "echo"}, 5},
		{"sort=name&order=desc&limit=2", []string{"echo", "delta"}, 5},
		{"sort=name&offset=3&limit=10", []string{"delta", "echo"}, 5},
		{"sort=id&order=desc&offset=1&limit=2", []string{"bravo", "charlie"}, 5},
		{"name=LPH", []string{"Alpha"}, 1},
		{"name=ha", []string{"Alpha", "charlie"}, 2},
		{"mode=standard", []string{"Alpha", "bravo"}, 2},
		{fmt.Sprintf("tag=%d", tag.ID), []string{"bravo", "echo"}, 2},
		{fmt.Sprintf("group=%d", grp.ID), []string{"bravo"}, 1},
		{"group=0&mode=async", []string{"delta", "charlie", "echo"}, 3},
		{"status=online", []string{"charlie"}, 1},
		{"status=offline", []string{"delta"}, 1},
		{"status=never&sort=name", []string{"Alpha", "bravo", "echo"}, 3},
		{"sort=lastCheckIn&order=desc&limit=2", []string{"charlie", "delta"}, 5},
		{"trusted=false", nil, 0},
	} {
		got, total := list(c.q)
		if !slices.Equal(got, c.want) || total != c.total {
			t.Errorf("?%s: %v (total %d), want %v (total %d)", c.q, got, total, c.want, c.total)
		}
	}
	// A rename re-sorts.
	apiJSON(t, hs, "PATCH", fmt.Sprintf("/api/environments/%d", ids["echo"]), tok, map[string]any{"name": "aardvark"}, nil, http.StatusOK)
	if got, _ := list("sort=name&limit=1"); !slices.Equal(got, []string{"aardvark"}) {
		t.Errorf("after rename: %v", got)
	}
	status, body := call(t, hs, "GET", "/api/environments?status=up&sort=size&limit=0", tok, nil)
	if status != http.StatusBadRequest || !strings.Contains(string(body), "status") || !strings.Contains(string(body), "sort") || !strings.Contains(string(body), "limit") {
		t.Errorf("bad query: %d %s", status, body)
	}
}
