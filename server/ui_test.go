package server

import (
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
	d := &snapshot.Docker{Engine: snapshot.Engine{Hostname: "gw", ServerVersion: "27.3.1"}, Containers: []snapshot.Container{
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
	for _, w := range []string{"Up 5 minutes", "Exited (137) 2 hours ago", "0.0.0.0:8080-&gt;80/tcp", "arrived as a full snapshot", "seq 1", s.edgeKey(1), "gw-1", "2 containers: 1 running, 1 exited"} {
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
