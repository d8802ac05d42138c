package web_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"outpost/web"
)

func TestAddEnvironment(t *testing.T) {
	s := newSite(t)
	s.b.tags = []web.Option{{ID: 7, Name: "eu"}}
	s.b.envGroup = []web.Option{{ID: 3, Name: "north"}}
	_, body := s.get("/environments")
	mustContain(t, body, `href="/environments/new"`)
	_, body = s.get("/environments/new")
	mustContain(t, body, `name="name"`, `value="standard"`, `name="ping"`, `name="tag" value="7"`, `<option value="3">north</option>`)
	res := s.do(http.MethodPost, "/environments", s.token, url.Values{"name": {"ship-9"}, "mode": {"standard"}, "ping": {"30"}, "snapshot": {""},
		"command": {"60"}, "tag": {"7"}, "group": {"3"}}, nil)
	body = bodyOf(t, res)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("add: %d %s", res.StatusCode, body)
	}
	n := s.b.created[0]
	if n.Name != "ship-9" || n.Mode != "standard" || n.Ping != 30 || n.Snapshot != 0 || n.Command != 60 || !slices.Equal(n.Tags, []uint64{7}) || n.Group != 3 {
		t.Fatalf("created %+v", n)
	}
	mustContain(t, body, "ship-9 is ready for its device", "shown once", `id="edge-key"`, `data-copy="edge-key"`, `data-copy="docker-run"`,
		"docker run -e EDGE_KEY=a2V5LXdpdGgtc2VjcmV0", `data-contact="/environments/105/contact"`, "Waiting for the device")
	// The page's script asks whether the device called in.
	status, js := s.get("/environments/105/contact")
	if status != http.StatusOK || !strings.Contains(js, `"status":"never"`) {
		t.Fatalf("contact: %d %s", status, js)
	}
}

func TestAddEnvironmentProblems(t *testing.T) {
	s := newSite(t)
	res := s.do(http.MethodPost, "/environments", s.token, url.Values{"name": {"taken"}, "mode": {"async"}}, nil)
	if body := bodyOf(t, res); res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "name: taken") || !strings.Contains(body, `value="taken"`) {
		t.Fatalf("refused name: %d", res.StatusCode)
	}
	res = s.do(http.MethodPost, "/environments", s.token, url.Values{"name": {"x"}, "ping": {"often"}, "tag": {"t"}}, nil)
	body := bodyOf(t, res)
	if res.StatusCode != http.StatusBadRequest || len(s.b.created) != 0 {
		t.Fatalf("bad fields: %d, created %v", res.StatusCode, s.b.created)
	}
	mustContain(t, body, "The environment was not added", "Ping: &#34;often&#34; is not a number of seconds", "tag &#34;t&#34; is not an ID")
}

func TestEditEnvironment(t *testing.T) {
	s := newSite(t)
	s.b.tags = []web.Option{{ID: 7, Name: "eu"}, {ID: 8, Name: "pilot"}}
	s.b.envs[0].TagIDs, s.b.envs[0].OwnPing = []uint64{8}, 30
	_, body := s.get("/environments/1")
	mustContain(t, body, `href="/environments/1/edit"`, `href="/environments/1/delete"`)
	_, body = s.get("/environments/1/edit")
	mustContain(t, body, `value="shop-042"`, `name="ping" min="0" value="30"`, `name="tag" value="8" checked`)
	res := s.do(http.MethodPost, "/environments/1/edit", s.token, url.Values{"name": {"shop-042b"}, "ping": {""}, "snapshot": {"600"}, "command": {""}, "tag": {"7"}}, nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/environments/1?saved=1" {
		t.Fatalf("edit: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	e := s.b.envs[0]
	if e.Name != "shop-042b" || e.OwnPing != 0 || e.OwnSnapshot != 600 || !slices.Equal(e.TagIDs, []uint64{7}) {
		t.Fatalf("after edit: %+v", e)
	}
	_, body = s.get("/environments/1?saved=1")
	mustContain(t, body, "Saved.")
}

func TestDeleteEnvironment(t *testing.T) {
	s := newSite(t)
	_, body := s.get("/environments/1/delete")
	mustContain(t, body, "Delete shop-042?", "42</strong> snapshot pushes", "2</strong> commands", "2 edge stacks (pos, telemetry)",
		"shop-042-gw-7f3a", "refused from then on", `name="confirm"`)
	res := s.do(http.MethodPost, "/environments/1/delete", s.token, url.Values{"confirm": {"shop-04"}}, nil)
	if res.StatusCode != http.StatusBadRequest || len(s.b.deleted) != 0 {
		t.Fatalf("wrong confirmation: %d, deleted %v", res.StatusCode, s.b.deleted)
	}
	res = s.do(http.MethodPost, "/environments/1/delete", s.token, url.Values{"confirm": {"shop-042"}}, nil)
	if res.StatusCode != http.StatusSeeOther || !slices.Equal(s.b.deleted, []uint64{1}) {
		t.Fatalf("delete: %d, deleted %v", res.StatusCode, s.b.deleted)
	}
	// The notice rides on a cookie for the list, shown once; a notice in
	// the URL is not shown, as anyone can write one into a link.
	var notice *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "outpost_flash" {
			notice = c
		}
	}
	if res.Header.Get("Location") != "/environments" || notice == nil || !notice.HttpOnly || !notice.Secure || notice.Path != "/environments" {
		t.Fatalf("delete answers %q with the notice cookie %+v", res.Header.Get("Location"), notice)
	}
	list := s.do(http.MethodGet, "/environments", s.token, nil, map[string]string{"Cookie": notice.Name + "=" + notice.Value})
	mustContain(t, bodyOf(t, list), "shop-042 is deleted; its device is refused from now on.")
	if cleared := list.Cookies(); len(cleared) != 1 || cleared[0].Name != "outpost_flash" || cleared[0].MaxAge >= 0 {
		t.Fatalf("the list page does not clear the notice: %+v", cleared)
	}
	if _, body := s.get("/environments?deleted=Everything"); strings.Contains(body, "Everything") {
		t.Fatal("the list shows a notice written into its URL")
	}
}

func TestReadOnlyCannotAddEditOrDelete(t *testing.T) {
	s := newSite(t)
	s.b.readOnly = true
	for _, p := range []string{"/environments", "/environments/1"} {
		if _, body := s.get(p); strings.Contains(body, "/environments/new") || strings.Contains(body, "/edit\"") || strings.Contains(body, "/delete\"") {
			t.Errorf("%s offers a read-only user add, edit or delete", p)
		}
	}
	for _, p := range []string{"/environments/new", "/environments/1/edit", "/environments/1/delete"} {
		if status, _ := s.get(p); status != http.StatusForbidden {
			t.Errorf("GET %s: %d, want 403", p, status)
		}
	}
	for p, form := range map[string]url.Values{
		"/environments":          {"name": {"x"}},
		"/environments/1/edit":   {"name": {"x"}},
		"/environments/1/delete": {"confirm": {"shop-042"}},
	} {
		if res := s.do(http.MethodPost, p, s.token, form, nil); res.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s: %d, want 403", p, res.StatusCode)
		}
	}
	if len(s.b.created) != 0 || len(s.b.deleted) != 0 || s.b.envs[0].Name != "shop-042" {
		t.Fatal("a read-only user's post was acted on")
	}
}
