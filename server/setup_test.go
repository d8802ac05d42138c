package server

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable Server.now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func postSetup(t *testing.T, base, tok, pw, confirm string) (int, string) {
	t.Helper()
	resp, err := http.PostForm(base+"/setup", url.Values{"token": {tok}, "password": {pw}, "confirm": {confirm}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// setupServer is a test server with no administrator, a fake clock and a
// fresh setup link; it returns the link's token.
func setupServer(t *testing.T) (*Server, string, *fakeClock, string) {
	t.Helper()
	s, hs := testServer(t)
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	s.now = clock.now
	need, err := s.ensureAdmin("")
	if err != nil || !need {
		t.Fatalf("ensureAdmin without a password: %v %v", need, err)
	}
	if n, _ := s.store.UserCount(); n != 0 {
		t.Fatalf("%d users before setup", n)
	}
	var out bytes.Buffer
	s.announceSetup(&out)
	prefix := s.url + "/setup?token="
	i := strings.Index(out.String(), prefix)
	if i < 0 {
		t.Fatalf("no setup link in %q", out.String())
	}
	tok, _, _ := strings.Cut(out.String()[i+len(prefix):], "\n")
	return s, hs.URL, clock, tok
}

func TestSetupLinkWorksOnceWithinFiveMinutes(t *testing.T) {
	s, base, clock, tok := setupServer(t)

	resp, err := http.Get(base + "/setup?token=" + tok)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `name="password"`) || resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("setup form: %d %s", resp.StatusCode, b)
	}
	if resp, err := http.Get(base + "/setup?token=0123"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("wrong token: %v %v", resp.StatusCode, err)
	}

	// A refused form does not spend the link.
	if status, body := postSetup(t, base, tok, "short", "other"); status != 400 || !strings.Contains(body, "8 to 72") || !strings.Contains(body, "differ") {
		t.Fatalf("bad passwords: %d %s", status, body)
	}
	clock.add(setupTTL - time.Second)
	if status, body := postSetup(t, base, tok, "admin-password", "admin-password"); status != 200 || !strings.Contains(body, "is ready") {
		t.Fatalf("setup within 5 minutes: %d %s", status, body)
	}
	if _, err := s.login(adminUsername, "admin-password", "192.0.2.1"); err != nil {
		t.Fatalf("login after setup: %v", err)
	}
	u, err := s.store.UserByName(adminUsername)
	if err != nil || u.Role != RoleAdmin {
		t.Fatalf("administrator: %+v %v", u, err)
	}
	if status, body := postSetup(t, base, tok, "other-password", "other-password"); status != http.StatusGone || !strings.Contains(body, "used already") {
		t.Fatalf("second use: %d %s", status, body)
	}
	if _, err := s.login(adminUsername, "other-password", "192.0.2.1"); err == nil {
		t.Fatal("the second use changed the password")
	}
	if need, err := s.ensureAdmin(""); need || err != nil {
		t.Fatalf("after setup, ensureAdmin still wants a link: %v %v", need, err)
	}
}

func TestSetupLinkExpiresAfterFiveMinutes(t *testing.T) {
	s, base, clock, tok := setupServer(t)
	clock.add(setupTTL)
	status, body := postSetup(t, base, tok, "admin-password", "admin-password")
	if status != http.StatusGone || !strings.Contains(body, "expired") || !strings.Contains(body, "restart outpost-server") {
		t.Fatalf("expired link: %d %s", status, body)
	}
	if n, _ := s.store.UserCount(); n != 0 {
		t.Fatal("an expired link made a user")
	}
	resp, err := http.Get(base + "/setup?token=" + tok)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone {
		t.Fatalf("expired link's form: %d", resp.StatusCode)
	}
}

func TestEnsureAdminWithPassword(t *testing.T) {
	s, hs := testServer(t)
	if need, err := s.ensureAdmin("given-password"); need || err != nil {
		t.Fatalf("ensureAdmin: %v %v", need, err)
	}
	if _, err := s.login(adminUsername, "given-password", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	// No link is pending, so /setup refuses.
	if status, _ := postSetup(t, hs.URL, "", "x-password", "x-password"); status != http.StatusNotFound {
		t.Fatalf("setup with an administrator present: %d", status)
	}
}
