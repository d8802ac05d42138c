package web_test

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"outpost/web"
)

// site is the UI under test with its fake backend and a logged-in token.
type site struct {
	t     *testing.T
	b     *fakeBackend
	h     http.Handler
	token string
}

func newSite(t *testing.T) *site {
	t.Helper()
	b := newFake(t, time.Now())
	s := &site{t: t, b: b, h: web.New(b, slog.New(slog.DiscardHandler))}
	tok, err := b.Login(b.user, b.password, "192.0.2.1:1")
	if err != nil {
		t.Fatal(err)
	}
	s.token = tok
	return s
}

// do serves one request; a browser-like same-origin POST unless headers say
// otherwise. With a token, it carries the session cookie.
func (s *site) do(method, target, token string, form url.Values, headers map[string]string) *http.Response {
	s.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, "https://outpost.example"+target, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if method == http.MethodPost {
		r.Header.Set("Origin", "https://outpost.example")
		r.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for k, v := range headers {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
	if token != "" {
		r.AddCookie(&http.Cookie{Name: "outpost_token", Value: token})
	}
	w := httptest.NewRecorder()
	s.h.ServeHTTP(w, r)
	return w.Result()
}

// get fetches target logged in and returns the status and body.
func (s *site) get(target string) (int, string) {
	s.t.Helper()
	res := s.do(http.MethodGet, target, s.token, nil, nil)
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func bodyOf(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustContain(t *testing.T, body string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("page lacks %q", w)
		}
	}
}

func cookie(res *http.Response, name string) *http.Cookie {
	for _, c := range res.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func TestLoginSetsCookie(t *testing.T) {
	s := newSite(t)
	res := s.do(http.MethodPost, "/login", "", url.Values{"username": {"admin"}, "password": {"correct horse"}}, nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/environments" {
		t.Fatalf("login: %d to %q, want 303 to /environments", res.StatusCode, res.Header.Get("Location"))
	}
	c := cookie(res, "outpost_token")
	if c == nil || c.Value == "" {
		t.Fatal("login set no outpost_token cookie")
	}
	if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
		t.Errorf("cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/", c)
	}
	if _, ok := s.b.Authenticate(c.Value); !ok {
		t.Error("cookie does not hold a token the backend accepts")
	}
	// The cookie opens the pages.
	if res := s.do(http.MethodGet, "/environments", c.Value, nil, nil); res.StatusCode != http.StatusOK {
		t.Errorf("environments with the new cookie: %d", res.StatusCode)
	}
}

func TestLoginFailure(t *testing.T) {
	s := newSite(t)
	for _, tc := range []struct {
		name string
		form url.Values
		want string
	}{
		{"wrong password", url.Values{"username": {"admin"}, "password": {"hunter2"}}, "Invalid username or password."},
		{"unknown user", url.Values{"username": {"mallory"}, "password": {"correct horse"}}, "Invalid username or password."},
		{"empty", url.Values{"username": {"admin"}}, "Enter your username and password."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := s.do(http.MethodPost, "/login", "", tc.form, nil)
			body := bodyOf(t, res)
			if res.StatusCode != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", res.StatusCode)
			}
			if cookie(res, "outpost_token") != nil {
				t.Error("a failed login set a cookie")
			}
			mustContain(t, body, tc.want, `<form method="post" action="/login">`, `value="`+tc.form.Get("username")+`"`)
			if strings.Contains(body, "hunter2") {
				t.Error("the form echoes the password")
			}
		})
	}
}

func TestLoginReturnsToPage(t *testing.T) {
	s := newSite(t)
	res := s.do(http.MethodGet, "/environments/1?tab=images", "", nil, nil)
	loc := res.Header.Get("Location")
	if loc != "/login?next="+url.QueryEscape("/environments/1?tab=images") {
		t.Fatalf("redirect to %q", loc)
	}
	if res := s.do(http.MethodGet, loc, s.token, nil, nil); res.Header.Get("Location") != "/environments/1?tab=images" {
		t.Errorf("logged in, %s goes to %q", loc, res.Header.Get("Location"))
	}
	anon := s.do(http.MethodGet, loc, "", nil, nil)
	mustContain(t, bodyOf(t, anon), `name="next" value="/environments/1?tab=images"`)

	for next, want := range map[string]string{
		"/environments/1?tab=images": "/environments/1?tab=images",
		"//evil.example/":            "/environments",
		"https://evil.example/":      "/environments",
		"/\\evil.example":            "/environments",
		"":                           "/environments",
	} {
		res := s.do(http.MethodPost, "/login", "", url.Values{"username": {"admin"}, "password": {"correct horse"}, "next": {next}}, nil)
		if got := res.Header.Get("Location"); got != want {
			t.Errorf("next %q: redirect to %q, want %q", next, got, want)
		}
	}
}

func TestUnauthenticatedRedirects(t *testing.T) {
	s := newSite(t)
	for _, tc := range []struct{ path, want string }{
		{"/", "/login"},
		{"/environments", "/login"},
		{"/environments/1", "/login?next=%2Fenvironments%2F1"},
		{"/environments/999", "/login?next=%2Fenvironments%2F999"},
		{"/no/such/page", "/login?next=%2Fno%2Fsuch%2Fpage"},
		{"/stacks", "/login?next=%2Fstacks"},
		{"/stacks/1", "/login?next=%2Fstacks%2F1"},
	} {
		for _, tok := range []string{"", "forged-token"} {
			res := s.do(http.MethodGet, tc.path, tok, nil, nil)
			if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != tc.want {
				t.Errorf("GET %s (token %q): %d to %q, want 303 to %q", tc.path, tok, res.StatusCode, res.Header.Get("Location"), tc.want)
			}
		}
	}
	if code, _ := s.get("/"); code != http.StatusSeeOther {
		t.Errorf("GET / logged in: %d", code)
	}
	if res := s.do(http.MethodGet, "/", s.token, nil, nil); res.Header.Get("Location") != "/environments" {
		t.Errorf("GET / logged in goes to %q, want /environments", res.Header.Get("Location"))
	}
	if res := s.do(http.MethodGet, "/login", s.token, nil, nil); res.StatusCode != http.StatusSeeOther {
		t.Errorf("GET /login logged in: %d, want a redirect onwards", res.StatusCode)
	}
}

func TestEnvironmentsPage(t *testing.T) {
	s := newSite(t)
	code, body := s.get("/environments")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	mustContain(t, body,
		`<a class="strong" href="/environments/1">shop-042</a>`, "vessel-north-star", "truck-1187", "windfarm-07-t12",
		`<span class="dot s-online"></span>online`, `<span class="dot s-offline"></span>offline`, `<span class="dot s-never"></span>never checked in`,
		"12 s ago", "3 min ago", "3 h ago", "never",
		">30 s · 5 min · 1 min<", ">1 h · 6 h · 15 min<", "0.3.1", "shop-042-gw", "shop-042-gw-7f3a", "not bound",
		`Log out`, `<span class="user">admin</span>`,
	)

	_, filtered := s.get("/environments?status=offline")
	if !strings.Contains(filtered, "vessel-north-star") || strings.Contains(filtered, ">shop-042<") {
		t.Error("status filter: want only the offline environment")
	}
	_, filtered = s.get("/environments?q=TRUCK")
	if !strings.Contains(filtered, "truck-1187") || strings.Contains(filtered, ">shop-042<") {
		t.Error("name filter: want only truck-1187")
	}
}

func TestEnvironmentsEmpty(t *testing.T) {
	s := newSite(t)
	s.b.envs = nil
	code, body := s.get("/environments")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	mustContain(t, body, "No environments yet", "/api/environments", "make run")
}

func TestEnvironmentPage(t *testing.T) {
	s := newSite(t)
	code, body := s.get("/environments/1")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	mustContain(t, body,
		// header facts
		"<h1>shop-042</h1>", "shop-042-gw-7f3a", "12 s ago", "ping 30 s · snapshot 5 min · command 1 min",
		"seq 42", "arrived as a delta from seq 41", `<code id="edge-key"`, s.b.envs[0].EdgeKey,
		// engine and summary
		"27.3.1 (API 1.47)", "7.69 GiB", "overlay2",
		"14 containers: 7 running, 1 restarting, 1 paused, 1 created, 4 exited",
		`<svg class="statebar"`, `<rect class="st-running"`,
		// containers, the default tab
		`<section id="containers"`, "telemetry-mosquitto-1", "pos-web-1", "label-printer",
		"Exited (137) 2 hours ago", "Exited (0) 9 hours ago", "Up 5 minutes", "Up 3 days", "Restarting (1) 20 seconds ago",
		"Up 12 days (Paused)", ">Created<",
		"0.0.0.0:8080-&gt;80/tcp", "[::]:1883-&gt;1883/tcp", "5432/tcp",
		`<span class="badge st-exited">exited</span>`, `<span class="badge hl-unhealthy">unhealthy</span>`,
		`telemetry <span class="muted">/ mosquitto</span>`,
	)
}

func TestTabs(t *testing.T) {
	s := newSite(t)
	for _, tc := range []struct {
		tab  string
		want []string
		not  string
	}{
		{"containers", []string{`<section id="containers"`, "pos-api-1"}, `<section id="images"`},
		{"images", []string{`<section id="images"`, "eclipse-mosquitto:2.0.18", "12.3 MB", "412 MB", "1a2b3c4d5e6f", "&lt;none&gt;", "unused"}, `<section id="containers"`},
		{"volumes", []string{`<section id="volumes"`, "pos_pgdata", "backup-nightly, pos-db-1", "local"}, `<section id="containers"`},
		{"networks", []string{`<section id="networks"`, "telemetry_default", "172.21.0.0/16, fd00:21::/64", "internal"}, `<section id="containers"`},
		{"projects", []string{`<section id="projects"`, "telemetry", "grafana, influxdb, mosquitto, node-red", "/opt/stacks/pos", "3 / 4"}, `<section id="containers"`},
		{"history", []string{`<section id="history"`, `<svg class="chart"`, `<rect class="h-full"`, `<rect class="h-delta"`,
			`<span class="badge h-full">full</span>`, "from 41", "42 pushes", "2 full snapshots"}, `<section id="containers"`},
		{"bogus", []string{`<section id="containers"`}, `<section id="images"`},
	} {
		t.Run(tc.tab, func(t *testing.T) {
			code, body := s.get("/environments/1?tab=" + tc.tab)
			if code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			mustContain(t, body, tc.want...)
			if strings.Contains(body, tc.not) {
				t.Errorf("tab %s also shows %q", tc.tab, tc.not)
			}
			cur := regexp.MustCompile(`<a href="/environments/1\?tab=(\w+)" aria-current="page">`).FindAllStringSubmatch(body, -1)
			want := tc.tab
			if want == "bogus" {
				want = "containers"
			}
			if len(cur) != 1 || cur[0][1] != want {
				t.Errorf("current tab links %v, want only %s", cur, want)
			}
		})
	}
}

func TestCapturePage(t *testing.T) {
	s := newSite(t)
	if s.b.snaps[envVessel] == nil {
		t.Skip("testdata/docker/docker-50.json not recorded on this checkout")
	}
	code, body := s.get("/environments/2")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	d := s.b.snaps[envVessel].Docker
	for _, c := range d.Containers[:min(5, len(d.Containers))] {
		if c.Name != "" {
			mustContain(t, body, c.Name)
		}
	}
}

func TestNoSnapshotYet(t *testing.T) {
	s := newSite(t)
	for _, id := range []string{"3", "4"} {
		code, body := s.get("/environments/" + id)
		if code != http.StatusOK {
			t.Fatalf("environment %s: status %d", id, code)
		}
		mustContain(t, body, "No snapshot yet")
		if strings.Contains(body, `class="tabs"`) {
			t.Errorf("environment %s without a snapshot shows tabs", id)
		}
	}
	_, body := s.get("/environments/4")
	mustContain(t, body, "The agent has not sent a snapshot yet", "every 5 min")
	_, body = s.get("/environments/3")
	mustContain(t, body, "No agent has checked in yet", "not bound yet")
}

func TestNotFound(t *testing.T) {
	s := newSite(t)
	for _, p := range []string{"/environments/999", "/environments/abc", "/environments/0", "/no/such/page"} {
		code, body := s.get(p)
		if code != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", p, code)
		}
		mustContain(t, body, `href="/environments"`)
	}
	_, body := s.get("/environments/999")
	mustContain(t, body, "There is no environment 999")

	// What the API's routes leave over is not sent to the login page.
	for _, p := range []string{"/api/nope", "/edge/v9/sync"} {
		res := s.do(http.MethodGet, p, "", nil, nil)
		if res.StatusCode != http.StatusNotFound || strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
			t.Errorf("GET %s: %d %s, want a plain 404", p, res.StatusCode, res.Header.Get("Content-Type"))
		}
	}
}

func TestBackendErrorIsNotShown(t *testing.T) {
	s := newSite(t)
	s.b.err = errors.New("bolt: database file /secret/path is locked")
	for _, p := range []string{"/environments", "/environments/1", "/stacks", "/stacks/1"} {
		code, body := s.get(p)
		if code != http.StatusInternalServerError {
			t.Errorf("GET %s: status %d, want 500", p, code)
		}
		if strings.Contains(body, "/secret/path") {
			t.Errorf("GET %s shows the backend error", p)
		}
		mustContain(t, body, "Something went wrong")
	}
}

func TestCrossSitePostRefused(t *testing.T) {
	s := newSite(t)
	creds := url.Values{"username": {"admin"}, "password": {"correct horse"}}
	for _, tc := range []struct {
		name    string
		path    string
		headers map[string]string
	}{
		{"login, Sec-Fetch-Site cross-site", "/login", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}},
		{"login, Sec-Fetch-Site same-site", "/login", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://other.outpost.example"}},
		{"login, Origin only", "/login", map[string]string{"Sec-Fetch-Site": "", "Origin": "https://evil.example"}},
		{"logout, cross-site", "/logout", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := s.do(http.MethodPost, tc.path, s.token, creds, tc.headers)
			if res.StatusCode != http.StatusForbidden {
				t.Errorf("status %d, want 403", res.StatusCode)
			}
			if c := cookie(res, "outpost_token"); c != nil {
				t.Errorf("refused request changed the cookie: %+v", c)
			}
			mustContain(t, bodyOf(t, res), "Request refused")
		})
	}
	if _, ok := s.b.Authenticate(s.token); !ok {
		t.Error("a cross-site logout ended the session")
	}
}

func TestLogout(t *testing.T) {
	s := newSite(t)
	res := s.do(http.MethodPost, "/logout", s.token, url.Values{}, nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/login" {
		t.Fatalf("logout: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	c := cookie(res, "outpost_token")
	if c == nil || c.MaxAge >= 0 || c.Value != "" {
		t.Errorf("logout cookie %+v: want it deleted", c)
	}
	if _, ok := s.b.Authenticate(s.token); ok {
		t.Error("logout left the session valid on the backend")
	}
	if res := s.do(http.MethodGet, "/environments", s.token, nil, nil); res.StatusCode != http.StatusSeeOther {
		t.Errorf("old token after logout: %d, want a redirect to login", res.StatusCode)
	}
}

func TestEscaping(t *testing.T) {
	s := newSite(t)
	s.b.envs[0].Name = `<img src=x onerror=alert(1)>`
	for _, p := range []string{"/environments", "/environments/1"} {
		_, body := s.get(p)
		for _, bad := range []string{"<script>alert(", "<img src=x"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s contains unescaped %q", p, bad)
			}
		}
		mustContain(t, body, "&lt;img src=x onerror=alert(1)&gt;")
	}
	_, body := s.get("/environments/1")
	mustContain(t, body, "&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;")
}

// TestContentSecurityPolicy checks that the policy allows exactly the inline
// stylesheet and script the pages carry: a stale hash would leave the UI
// unstyled in a browser while every other test passed.
func TestContentSecurityPolicy(t *testing.T) {
	s := newSite(t)
	for _, p := range []string{"/login", "/environments", "/environments/1?tab=history", "/stacks", "/stacks/1"} {
		tok := s.token
		if p == "/login" {
			tok = ""
		}
		res := s.do(http.MethodGet, p, tok, nil, nil)
		body := bodyOf(t, res)
		csp := res.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", p, csp)
		}
		for _, tag := range []string{"style", "script"} {
			m := regexp.MustCompile(`(?s)<`+tag+`>(.*?)</`+tag+`>`).FindAllStringSubmatch(body, -1)
			if len(m) != 1 {
				t.Fatalf("%s: %d <%s> elements, want 1", p, len(m), tag)
			}
			sum := sha256.Sum256([]byte(m[0][1]))
			if h := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, tag+"-src "+h) {
				t.Errorf("%s: CSP %q does not allow the page's <%s> (%s)", p, csp, tag, h)
			}
		}
		if regexp.MustCompile(`\son[a-z]+=|\sstyle=`).MatchString(body) {
			t.Errorf("%s has an inline handler or style attribute the CSP would block", p)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" || res.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: missing nosniff or no-store", p)
		}
	}
}
