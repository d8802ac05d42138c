package web_test

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"outpost/web"
)

// withWaiting gives the fake a waiting room: two devices, one of them
// carrying an edge ID already bound to environment 1 under another key.
func withWaiting(s *site) {
	now := time.Now()
	s.b.waiting = []web.WaitingDevice{
		{ID: 1, EdgeID: "gw-0001", Fingerprint: "SHA256:aaaa", Hostname: "till-1", AgentVersion: "0.4.0", Platform: "docker · linux/arm64",
			Mode: "async", Groups: []string{"shops"}, Tags: []string{"eu"}, Source: "198.51.100.7", FirstSeen: now.Add(-10 * time.Minute), LastSeen: now.Add(-time.Minute)},
		{ID: 2, EdgeID: "shop-042-gw-7f3a", Fingerprint: "SHA256:bbbb", Hostname: "reflashed", AgentVersion: "0.4.0", Mode: "standard",
			Source: "198.51.100.8", FirstSeen: now.Add(-5 * time.Minute), LastSeen: now, BoundTo: envShop, BoundName: "shop-042"},
	}
	s.b.groups = []web.Option{{ID: 1, Name: "shops"}, {ID: 2, Name: "by tag", Dynamic: true}}
	s.b.tags = []web.Option{{ID: 7, Name: "eu"}, {ID: 8, Name: "pilot"}}
	s.b.onboard = web.Onboarding{EdgeKey: "b25ib2FyZGluZw", DockerRun: "docker run -d --name outpost-agent -e EDGE_KEY=b25ib2FyZGluZw outpost/agent",
		Rules: web.OnboardingRules{WaitingRoomMax: 1000, PerSource: 10, PerNetwork: 30, Total: 300, ExpirySeconds: 3600,
			PreauthorizedKeys: []string{"SHA256:cccc"}}}
}

func TestWaitingRoomPage(t *testing.T) {
	s := newSite(t)
	withWaiting(s)
	status, body := s.get("/waiting-room")
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	mustContain(t, body, "till-1", "gw-0001", "SHA256:aaaa", "0.4.0", "docker · linux/arm64", "groups shops", "tags eu", "198.51.100.7",
		"2 waiting", "cap 1000", "2 new in the last hour", "198.51.100.0/24",
		// the conflict says what trusting does
		"Edge ID already bound to", "shop-042", "Trusting makes a new environment beside it", "keeps its own key",
		// onboarding key with a copy button, and the rules
		`id="docker-run"`, `data-copy="docker-run"`, "docker run -d --name outpost-agent -e EDGE_KEY=b25ib2FyZGluZw",
		"Rotate the key", `name="waitingRoomMax" min="1" value="1000"`, "SHA256:cccc",
		`value="trust"`, `value="reject"`, `name="all" value="1"`)
	// Only static edge groups can be joined by hand.
	if strings.Contains(body, ">by tag<") {
		t.Error("the trust form offers a dynamic edge group")
	}
	_, body = s.get("/waiting-room?q=till")
	mustContain(t, body, "till-1")
	if strings.Contains(body, "reflashed") {
		t.Error("the search did not filter")
	}
}

func TestWaitingRoomPages(t *testing.T) {
	s := newSite(t)
	withWaiting(s)
	s.b.waiting = nil
	for i := range 120 {
		s.b.waiting = append(s.b.waiting, web.WaitingDevice{ID: uint64(i + 1), EdgeID: "dev-" + strings.Repeat("x", i%3) + string(rune('a'+i%26)), Mode: "async"})
	}
	_, body := s.get("/waiting-room")
	mustContain(t, body, "1–50 of 120", `rel="next"`)
	_, body = s.get("/waiting-room?page=3")
	mustContain(t, body, "101–120 of 120", `rel="prev"`)
}

func TestTrustTickedDevices(t *testing.T) {
	s := newSite(t)
	withWaiting(s)
	res := s.do(http.MethodPost, "/waiting-room/action", s.token, url.Values{"action": {"trust"}, "id": {"1", "2"}, "group": {"1"}, "tag": {"7", "8"}}, nil)
	body := bodyOf(t, res)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
	if len(s.b.trusted) != 1 {
		t.Fatalf("trust calls: %+v", s.b.trusted)
	}
	c := s.b.trusted[0]
	if !slices.Equal(c.ids, []uint64{1, 2}) || !slices.Equal(c.groups, []uint64{1}) || !slices.Equal(c.tags, []uint64{7, 8}) || c.actor.User != "admin" {
		t.Fatalf("trusted %+v", c)
	}
	mustContain(t, body, "2 devices trusted", "till-1", `href="/environments/101"`, "beside", "environment 1", "keeps its own key")
}

// TestTrustAllMatching: "all that match" acts on the devices the page
// showed. A device that arrived after it was read is left waiting; when the
// room changed so that more match than were shown, nothing is done.
func TestTrustAllMatching(t *testing.T) {
	gw := func(id uint64) web.WaitingDevice {
		return web.WaitingDevice{ID: id, EdgeID: fmt.Sprintf("gw-%04d", id), Fingerprint: fmt.Sprintf("SHA256:%d", id), Mode: "async", FirstSeen: time.Now(), LastSeen: time.Now()}
	}
	read := func(s *site) url.Values {
		_, body := s.get("/waiting-room?q=gw-000")
		mustContain(t, body, "All 2 that match")
		form := url.Values{"action": {"reject"}, "all": {"1"}, "q": {"gw-000"}}
		for _, name := range []string{"upto", "shown"} {
			m := regexp.MustCompile(`name="` + name + `" value="(\d+)"`).FindStringSubmatch(body)
			if m == nil {
				t.Fatalf("the page has no %s field", name)
			}
			form.Set(name, m[1])
		}
		return form
	}
	t.Run("a later arrival is left waiting", func(t *testing.T) {
		s := newSite(t)
		withWaiting(s)
		s.b.waiting[1] = gw(5)
		form := read(s)
		s.b.waiting = append(s.b.waiting, gw(6))
		res := s.do(http.MethodPost, "/waiting-room/action", s.token, form, nil)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", res.StatusCode, bodyOf(t, res))
		}
		if len(s.b.rejected) != 1 || !slices.Equal(s.b.rejected[0], []uint64{1, 5}) {
			t.Fatalf("rejected %v, want the two devices the page showed", s.b.rejected)
		}
		mustContain(t, bodyOf(t, res), "2 devices rejected")
	})
	t.Run("more matching than shown", func(t *testing.T) {
		s := newSite(t)
		withWaiting(s)
		s.b.waiting[1] = gw(5)
		form := read(s)
		s.b.waiting = append(s.b.waiting, gw(4)) // stored before 5, in the room after the page was read
		res := s.do(http.MethodPost, "/waiting-room/action", s.token, form, nil)
		if res.StatusCode != http.StatusConflict || len(s.b.rejected) != 0 {
			t.Fatalf("status %d, rejected %v: want 409 and nothing done", res.StatusCode, s.b.rejected)
		}
		mustContain(t, bodyOf(t, res), "3 devices match now, 2 when the page was read: nothing was done")
	})
	t.Run("no bounds", func(t *testing.T) {
		s := newSite(t)
		withWaiting(s)
		res := s.do(http.MethodPost, "/waiting-room/action", s.token, url.Values{"action": {"reject"}, "all": {"1"}, "q": {"gw-0001"}}, nil)
		if res.StatusCode != http.StatusBadRequest || len(s.b.rejected) != 0 {
			t.Fatalf("status %d, rejected %v: want 400 and nothing done", res.StatusCode, s.b.rejected)
		}
	})
}

func TestWaitingActionProblems(t *testing.T) {
	s := newSite(t)
	withWaiting(s)
	for _, tc := range []struct {
		form url.Values
		want string
	}{
		{url.Values{"action": {"trust"}}, "No device selected"},
		{url.Values{"action": {"adopt"}, "id": {"1"}}, "is not an action"},
		{url.Values{"action": {"trust"}, "id": {"one"}}, `device &#34;one&#34; is not an ID`},
	} {
		res := s.do(http.MethodPost, "/waiting-room/action", s.token, tc.form, nil)
		body := bodyOf(t, res)
		if res.StatusCode != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("%v: %d, want 400 with %q", tc.form, res.StatusCode, tc.want)
		}
	}
	// A device gone meanwhile: the result page says so, and nothing else.
	res := s.do(http.MethodPost, "/waiting-room/action", s.token, url.Values{"action": {"trust"}, "id": {"99"}}, nil)
	body := bodyOf(t, res)
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("a device not in the room: %d", res.StatusCode)
	}
	mustContain(t, body, "0 devices trusted", "1 not trusted", "waiting device 99: not in the waiting room")
}

func TestReadOnlyUserSeesNoActions(t *testing.T) {
	s := newSite(t)
	withWaiting(s)
	s.b.readOnly = true
	_, body := s.get("/waiting-room")
	for _, bad := range []string{`value="trust"`, `value="reject"`, "Rotate the key", "Save the rules", `name="id"`} {
		if strings.Contains(body, bad) {
			t.Errorf("a read-only user's waiting room has %q", bad)
		}
	}
	mustContain(t, body, "till-1", "Your role can read the rules but not change them")
	if strings.Contains(body, "b25ib2FyZGluZw") {
		t.Error("a read-only user's waiting room shows the onboarding key, which carries the onboarding secret")
	}
	for path, form := range map[string]url.Values{
		"/waiting-room/action": {"action": {"trust"}, "id": {"1"}},
		"/waiting-room/rules":  {"waitingRoomMax": {"5"}},
		"/waiting-room/rotate": {},
	} {
		res := s.do(http.MethodPost, path, s.token, form, nil)
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("read-only POST %s: %d, want 403", path, res.StatusCode)
		}
	}
	if len(s.b.trusted) != 0 || s.b.rulesSet != nil || s.b.rotations != 0 {
		t.Fatal("a read-only user's post was acted on")
	}
}

func TestOnboardingRulesForm(t *testing.T) {
	s := newSite(t)
	withWaiting(s)
	form := url.Values{"trustOnFirstConnect": {"on"}, "preauthorizedEdgeIds": {"serial-1 SHA256:dddd\n\n  serial-2 SHA256:eeee  \n"},
		"preauthorizedKeys": {""}, "waitingRoomMax": {"50"}, "perSource": {"2"}, "perNetwork": {"5"}, "total": {"20"}, "expiry": {"600"}}
	res := s.do(http.MethodPost, "/waiting-room/rules", s.token, form, nil)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("status %d: %s", res.StatusCode, bodyOf(t, res))
	}
	r := s.b.rulesSet
	if r == nil || !r.TrustOnFirstConnect || !slices.Equal(r.PreauthorizedEdgeIDs, []string{"serial-1 SHA256:dddd", "serial-2 SHA256:eeee"}) ||
		len(r.PreauthorizedKeys) != 0 || r.WaitingRoomMax != 50 || r.PerSource != 2 || r.PerNetwork != 5 || r.Total != 20 || r.ExpirySeconds != 600 {
		t.Fatalf("rules set: %+v", r)
	}
	loc, _, _ := strings.Cut(res.Header.Get("Location"), "#") // a browser keeps the fragment to itself
	_, body := s.get(loc)
	mustContain(t, body, "The onboarding rules are saved")

	// Refused: every problem shown, and the form keeps what was typed.
	s.b.rulesSet = nil
	form.Set("waitingRoomMax", "lots")
	form.Set("expiry", "0")
	res = s.do(http.MethodPost, "/waiting-room/rules", s.token, form, nil)
	body = bodyOf(t, res)
	if res.StatusCode != http.StatusBadRequest || s.b.rulesSet != nil {
		t.Fatalf("bad numbers: %d, set %+v", res.StatusCode, s.b.rulesSet)
	}
	mustContain(t, body, "The rules were not saved", "Room cap: &#34;lots&#34; is not a whole number", "Expiry: &#34;0&#34;", "serial-2 SHA256:eeee")
	s.b.rulesErr = []string{"preauthorizedEdgeIds \"serial-1\": name the device's key"}
	form.Set("waitingRoomMax", "50")
	form.Set("expiry", "600")
	res = s.do(http.MethodPost, "/waiting-room/rules", s.token, form, nil)
	if body := bodyOf(t, res); res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "name the device&#39;s key") {
		t.Fatalf("backend refusal: %d", res.StatusCode)
	}

	res = s.do(http.MethodPost, "/waiting-room/rotate", s.token, url.Values{}, nil)
	if res.StatusCode != http.StatusSeeOther || s.b.rotations != 1 {
		t.Fatalf("rotate: %d, %d rotations", res.StatusCode, s.b.rotations)
	}
}

// TestWaitingFormsRefuseCrossSite: the forms are protected as login and
// logout are: a post from another site is refused before it is read, and
// the session cookie is SameSite=Strict.
func TestWaitingFormsRefuseCrossSite(t *testing.T) {
	s := newSite(t)
	withWaiting(s)
	for _, path := range []string{"/waiting-room/action", "/waiting-room/rules", "/waiting-room/rotate"} {
		res := s.do(http.MethodPost, path, s.token, url.Values{"action": {"trust"}, "id": {"1"}},
			map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("cross-site POST %s: %d, want 403", path, res.StatusCode)
		}
	}
	if len(s.b.trusted) != 0 || s.b.rotations != 0 {
		t.Fatal("a cross-site post was acted on")
	}
}

// TestDeviceStringsAreEscaped puts markup into every string a device
// reports that the waiting room and the snapshot pages show.
func TestDeviceStringsAreEscaped(t *testing.T) {
	s := newSite(t)
	withWaiting(s)
	x := `<script>alert(1)</script>`
	d := &s.b.waiting[0]
	d.EdgeID, d.Hostname, d.AgentVersion, d.Platform, d.Groups, d.Tags, d.Source, d.BoundName, d.BoundTo = x, x, x, x, []string{x}, []string{x}, x, x, 1
	snap := s.b.snaps[envShop].Docker
	c := &snap.Containers[0]
	c.Name, c.Image, c.Command, c.Labels = x, x, x, map[string]string{x: x}
	c.Mounts = append(c.Mounts, snapshotMount(x))
	snap.Engine.Hostname = x
	s.b.envs[0].Hostname, s.b.envs[0].AgentVersion = x, x
	for _, p := range []string{"/waiting-room", "/environments", "/environments/1", "/environments/1?tab=containers&container=" + url.QueryEscape(c.ID)} {
		status, body := s.get(p)
		if status != http.StatusOK {
			t.Fatalf("%s: %d", p, status)
		}
		if strings.Contains(body, x) {
			t.Errorf("%s shows %q unescaped", p, x)
		}
		mustContain(t, body, "&lt;script&gt;alert(1)&lt;/script&gt;")
	}
}
