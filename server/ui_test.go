package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"outpost/protocol"
	"outpost/server/store"
	"outpost/snapshot"
	"outpost/web"
)

func TestUIOverRealServer(t *testing.T) {
	s, _ := testServer(t)
	if _, err := s.ensureAdmin("correct horse battery"); err != nil {
		t.Fatal(err)
	}
	e := &store.Environment{Name: "shop-<042>", Mode: store.ModeAsync, Trusted: true, Created: time.Now().Unix(), EdgeID: "gw-1",
		Agent: &protocol.AgentInfo{Version: "0.3.1", Hostname: "gw"}}
	if err := s.store.CreateEnvironment(e); err != nil {
		t.Fatal(err)
	}
	s.checkins.touch(e.ID, time.Now().Add(-7*time.Second).Unix(), 150)
	d := &snapshot.Snapshot{Engine: snapshot.Engine{Hostname: "gw", ServerVersion: "27.3.1"}, Containers: []snapshot.Container{
		{ID: "aaaaaaaaaaaa", Name: "web", Image: "nginx", State: snapshot.StateRunning, Started: time.Now().Add(-5 * time.Minute).Unix(),
			Ports: []snapshot.Port{{Private: 80, Public: 8080, IP: "0.0.0.0"}}},
		{ID: "bbbbbbbbbbbb", Name: "job", Image: "busybox", State: snapshot.StateExited, ExitCode: 137, Started: 1, Finished: time.Now().Add(-2 * time.Hour).Unix()},
	}}
	snapshot.Normalize(d)
	data, _ := protocol.Marshal(d)
	if ack, err := s.ingestSnapshot(e.ID, &protocol.SnapshotPush{Seq: 1, Data: data}, time.Now()); err != nil || ack.SendFull {
		t.Fatalf("ingest: %v %+v", err, ack)
	}
	h := s.uiHandler()
	do := func(method, target, cookie string, form url.Values) *http.Response {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		r := httptest.NewRequest(method, target, body)
		if form != nil {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("Sec-Fetch-Site", "same-origin")
		}
		if cookie != "" {
			r.AddCookie(&http.Cookie{Name: "outpost_token", Value: cookie})
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Result()
	}
	res := do("POST", "/login", "", url.Values{"username": {"admin"}, "password": {"wrong password"}})
	if res.StatusCode != 401 {
		t.Fatalf("bad login: %d", res.StatusCode)
	}
	res = do("POST", "/login", "", url.Values{"username": {"admin"}, "password": {"correct horse battery"}})
	var tok string
	for _, c := range res.Cookies() {
		if c.Name == "outpost_token" {
			tok = c.Value
		}
	}
	if res.StatusCode != 303 || tok == "" {
		t.Fatalf("login: %d %q", res.StatusCode, tok)
	}
	res = do("GET", "/environments", tok, nil)
	b, _ := io.ReadAll(res.Body)
	for _, w := range []string{"shop-&lt;042&gt;", "online", " s ago", "0.3.1"} {
		if !strings.Contains(string(b), w) {
			t.Errorf("list lacks %q", w)
		}
	}
	res = do("GET", "/environments/1", tok, nil)
	b, _ = io.ReadAll(res.Body)
	for _, w := range []string{"Up 5 minutes", "Exited (137) 2 hours ago", "0.0.0.0:8080-&gt;80/tcp", "arrived as a full snapshot", "seq 1", s.edgeKey(1, ""), "gw-1", "2 containers: 1 running, 1 exited"} {
		if !strings.Contains(string(b), w) {
			t.Errorf("env page lacks %q", w)
		}
	}
	res = do("GET", "/environments/1?tab=history", tok, nil)
	b, _ = io.ReadAll(res.Body)
	if !strings.Contains(string(b), `<span class="badge h-full">full</span>`) {
		t.Error("history lacks the push")
	}
	if res := do("GET", "/environments/9", tok, nil); res.StatusCode != 404 {
		t.Errorf("missing env: %d", res.StatusCode)
	}
	if res := do("POST", "/logout", tok, url.Values{}); res.StatusCode != 303 {
		t.Errorf("logout %d", res.StatusCode)
	}
	if _, ok := s.sessions.lookup(tok); ok {
		t.Error("session survives logout")
	}
}

// TestUIStacksFromStore checks that the UI's backend reads edge stacks and
// their statuses as the store and the fleet index hold them: statuses the
// devices reported, and a target the reconciler has not reached yet.
func TestUIStacksFromStore(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	var ids []uint64
	for _, name := range []string{"shop-1", "shop-2", "shop-<3>"} {
		e := &store.Environment{Name: name, Mode: store.ModeAsync, Trusted: true}
		if err := s.store.CreateEnvironment(e); err != nil {
			t.Fatal(err)
		}
		s.indexEnvironment(e)
		ids = append(ids, e.ID)
	}
	var g store.EdgeGroup
	apiJSON(t, hs, "POST", "/api/edge-groups", tok, map[string]any{"name": "shops", "environmentIds": ids[:2]}, &g, http.StatusCreated)
	var st stackView
	apiJSON(t, hs, "POST", "/api/edge-stacks", tok, map[string]any{
		"name": "web", "composeFile": testCompose, "edgeGroupIds": []uint64{g.ID},
		"registries": []map[string]string{{"url": "registry.example.com", "username": "bot", "password": "pw"}},
	}, &st, http.StatusCreated)
	if err := s.reconcile(); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	const failure = `web: pull <registry.example.com/web>: denied`
	if err := s.ingestStackStatuses(ids[0], []protocol.StackStatus{{StackID: st.ID, Version: 1, Status: protocol.StatusRunning}}, now); err != nil {
		t.Fatal(err)
	}
	if err := s.ingestStackStatuses(ids[1], []protocol.StackStatus{{StackID: st.ID, Version: 1, Status: protocol.StatusFailed, Error: failure}}, now); err != nil {
		t.Fatal(err)
	}
	// The third joins the group; the reconciler has not run since.
	apiJSON(t, hs, "PUT", fmt.Sprintf("/api/edge-groups/%d", g.ID), tok, map[string]any{"name": "shops", "environmentIds": ids}, nil, http.StatusOK)

	b := uiBackend{s}
	list, err := b.Stacks()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{stackRunning: 1, stackError: 1, stackPending: 1}
	if len(list) != 1 || list[0].ID != st.ID || list[0].Name != "web" || list[0].Version != 1 || list[0].By != "admin" ||
		fmt.Sprint(list[0].EdgeGroups) != "[shops]" || fmt.Sprint(list[0].Registries) != "[registry.example.com]" ||
		list[0].Created.IsZero() || fmt.Sprint(list[0].Statuses) != fmt.Sprint(want) {
		t.Fatalf("Stacks() = %+v", list)
	}
	one, targets, err := b.Stack(st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if one.Name != "web" || fmt.Sprint(one.Statuses) != fmt.Sprint(want) || len(targets) != 3 {
		t.Fatalf("Stack(%d) = %+v, %+v", st.ID, one, targets)
	}
	got := map[uint64]web.StackTarget{}
	for _, x := range targets {
		got[x.EnvID] = x
	}
	for i, w := range []web.StackTarget{
		{EnvID: ids[0], EnvName: "shop-1", Version: 1, Status: stackRunning},
		{EnvID: ids[1], EnvName: "shop-2", Version: 1, Status: stackError, Error: failure},
		{EnvID: ids[2], EnvName: "shop-<3>", Version: 1, Status: stackPending},
	} {
		x := got[w.EnvID]
		if x.EnvName != w.EnvName || x.Version != w.Version || x.Status != w.Status || x.Error != w.Error || x.Remove {
			t.Errorf("target %d = %+v, want %+v", i, x, w)
		}
		if i < 2 && x.Updated.Unix() != now {
			t.Errorf("target %d updated %v, want %d", i, x.Updated, now)
		}
	}
	if _, _, err := b.Stack(st.ID + 1); !errors.Is(err, web.ErrNotFound) {
		t.Errorf("missing stack: %v, want web.ErrNotFound", err)
	}

	// And the pages show it.
	h := s.uiHandler()
	get := func(path string) (int, string) {
		r := httptest.NewRequest("GET", path, nil)
		r.AddCookie(&http.Cookie{Name: "outpost_token", Value: tok})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	code, body := get("/stacks")
	if code != http.StatusOK || !strings.Contains(body, fmt.Sprintf(`<a class="strong" href="/stacks/%d">web</a>`, st.ID)) ||
		!strings.Contains(body, "3 environments: 1 running, 1 pending, 1 error") {
		t.Errorf("/stacks: %d\n%s", code, body)
	}
	code, body = get(fmt.Sprintf("/stacks/%d", st.ID))
	for _, w := range []string{
		fmt.Sprintf(`<a class="strong" href="/environments/%d">shop-2</a>`, ids[1]), "shop-&lt;3&gt;",
		"web: pull &lt;registry.example.com/web&gt;: denied", `<rect class="ss-error"`, "shops", "registry.example.com",
	} {
		if code != http.StatusOK || !strings.Contains(body, w) {
			t.Errorf("/stacks/%d: %d, lacks %q", st.ID, code, w)
		}
	}
	if code, _ := get(fmt.Sprintf("/stacks/%d", st.ID+1)); code != http.StatusNotFound {
		t.Errorf("missing stack page: %d, want 404", code)
	}
}
