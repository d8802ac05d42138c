package web_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"outpost/web"
)

func TestQueueContainerStop(t *testing.T) {
	s := newSite(t)
	s.b.log.NextPull = time.Now().Add(40 * time.Second)
	_, body := s.get("/environments/1?tab=containers&container=b1c2d3e4f5a6")
	mustContain(t, body, `action="/environments/1/commands"`, `value="container.stop"`, `value="container.kill"`, `value="container.remove"`, "Take a snapshot now")
	if strings.Contains(body, `value="container.start"`) {
		t.Error("a running container is offered a start")
	}
	res := s.do(http.MethodPost, "/environments/1/commands", s.token, url.Values{"kind": {"container.stop"}, "target": {"b1c2d3e4f5a6"}}, nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/environments/1?tab=commands&queued=1" {
		t.Fatalf("queue: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	if len(s.b.queued) != 1 || s.b.queued[0].kind != "container.stop" || s.b.queued[0].args["id"] != "b1c2d3e4f5a6" || s.b.queued[0].env != 1 {
		t.Fatalf("queued %+v", s.b.queued)
	}
	_, body = s.get("/environments/1?tab=commands&queued=1")
	mustContain(t, body, "Waiting for the device", "container.stop", "b1c2d3e4f5a6", "its next pull is expected", `http-equiv="refresh"`)
	if !regexp.MustCompile(`expected <strong title="[^"]+">in (39|40) seconds</strong>`).MatchString(body) {
		t.Error("the commands tab does not say the next pull is in 40 s")
	}
	// The result arrives: the page says so and stops refreshing.
	s.b.log = web.CommandLog{NextPull: time.Now().Add(-5 * time.Minute), Results: []web.Command{
		{ID: 1, Kind: "container.stop", Target: "b1c2d3e4f5a6", Status: "ok", Finished: time.Now()},
		{ID: 2, Kind: "container.start", Target: "gone", Status: "failed", Error: "No such container: gone", Finished: time.Now()},
	}}
	_, body = s.get("/environments/1?tab=commands")
	mustContain(t, body, `<span class="badge st-running">ok</span>`, "No such container: gone", "overdue by 5 min", "Nothing waits")
	if strings.Contains(body, `http-equiv="refresh"`) {
		t.Error("the commands tab keeps refreshing with nothing pending")
	}
}

func TestQueueCommandProblems(t *testing.T) {
	s := newSite(t)
	for _, tc := range []struct {
		form url.Values
		want string
	}{
		{url.Values{"kind": {"container.exec"}, "target": {"x"}}, "is not a command here"},
		{url.Values{"kind": {"container.stop"}}, "Name the container"},
		{url.Values{"kind": {"container.remove"}, "target": {"refused"}}, "no such container"},
	} {
		res := s.do(http.MethodPost, "/environments/1/commands", s.token, tc.form, nil)
		if body := bodyOf(t, res); res.StatusCode != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("%v: %d, want 400 with %q", tc.form, res.StatusCode, tc.want)
		}
	}
	if res := s.do(http.MethodPost, "/environments/99/commands", s.token, url.Values{"kind": {"snapshot.now"}}, nil); res.StatusCode != http.StatusNotFound {
		t.Errorf("unknown environment: %d", res.StatusCode)
	}
	if len(s.b.queued) != 0 {
		t.Fatalf("queued %+v", s.b.queued)
	}
}

func TestNoActionsOnAPastPointOrForReadOnly(t *testing.T) {
	s := newSite(t)
	withPast(s)
	_, body := s.get("/environments/1?tab=containers&container=b1c2d3e4f5a6&at=40")
	if strings.Contains(body, `value="container.stop"`) || strings.Contains(body, "Take a snapshot now") {
		t.Error("a past point offers actions")
	}
	s.b.readOnly = true
	for _, p := range []string{"/environments/1?tab=containers&container=b1c2d3e4f5a6", "/environments/1?tab=images", "/environments/1?tab=volumes"} {
		if _, body := s.get(p); strings.Contains(body, `/commands"`) {
			t.Errorf("%s offers a read-only user an action", p)
		}
	}
	if res := s.do(http.MethodPost, "/environments/1/commands", s.token, url.Values{"kind": {"snapshot.now"}}, nil); res.StatusCode != http.StatusForbidden {
		t.Fatalf("read-only queue: %d", res.StatusCode)
	}
}
