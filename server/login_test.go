package server

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// A password guesser is locked out, for longer each time, without locking
// the real user out from another network, and every lockout ends. The API
// and the UI's form share the lockout.
func TestLoginBruteForceIsThrottled(t *testing.T) {
	s, _ := testServer(t)
	addUser(t, s, "admin", RoleAdmin, "correct horse battery")
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	h := s.routes()
	api := func(remote, password string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/api/auth", strings.NewReader(`{"username":"admin","password":"`+password+`"}`))
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	form := func(remote, password string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"username": {"admin"}, "password": {password}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	const attacker, neighbour, elsewhere = "203.0.113.7:5000", "203.0.113.99:6000", "198.51.100.4:7000"
	for i := range pairLogins.Free {
		if w := api(attacker, "guess"); w.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d %s", i+1, w.Code, w.Body)
		}
	}
	if w := api(attacker, "guess"); w.Code != http.StatusUnauthorized {
		t.Fatalf("the guess past the free ones is still answered: %d", w.Code)
	}
	// Locked now, even with the right password, through the API and the
	// form, and from the attacker's whole /24.
	for _, w := range []*httptest.ResponseRecorder{api(attacker, "correct horse battery"), api(neighbour, "correct horse battery"), form(attacker, "correct horse battery")} {
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
			t.Fatalf("during the lockout: %d %q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
		}
	}
	if w := form(attacker, "x"); !strings.Contains(w.Body.String(), "Too many failed logins") {
		t.Fatalf("the form does not say why: %s", w.Body)
	}
	// The real administrator elsewhere is not locked out.
	if w := api(elsewhere, "correct horse battery"); w.Code != http.StatusOK {
		t.Fatalf("login from another network during the lockout: %d %s", w.Code, w.Body)
	}
	// The lockout doubles with each failure after it ends.
	var last time.Duration
	for range 6 {
		advance(16 * time.Minute) // past any lockout
		if w := api(attacker, "guess"); w.Code != http.StatusUnauthorized {
			t.Fatalf("guess after the lockout ended: %d", w.Code)
		}
		d := s.logins.get().pair.Locked("admin@203.0.113.0/24", s.now())
		if d <= last && d != pairLogins.Max {
			t.Fatalf("lockout %v after one of %v: not growing", d, last)
		}
		last = d
	}
	// It ends: after the reset period the right password works there too.
	advance(pairLogins.Reset + pairLogins.Max)
	if w := api(attacker, "correct horse battery"); w.Code != http.StatusOK {
		t.Fatalf("login after the lockout and reset: %d %s", w.Code, w.Body)
	}
}

// Guessing many users' passwords from one network locks the network.
func TestLoginNetworkIsThrottled(t *testing.T) {
	s, _ := testServer(t)
	addUser(t, s, "admin", RoleAdmin, "correct horse battery")
	h := s.routes()
	try := func(user string) int {
		r := httptest.NewRequest("POST", "/api/auth", strings.NewReader(`{"username":"`+user+`","password":"guess"}`))
		r.RemoteAddr = "[2001:db8:0:1::5]:443"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	for i := range networkLogins.Free {
		if c := try("user" + string(rune('a'+i))); c != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i+1, c)
		}
	}
	try("another")
	r := httptest.NewRequest("POST", "/api/auth", strings.NewReader(`{"username":"admin","password":"correct horse battery"}`))
	r.RemoteAddr = "[2001:db8:0:1:ffff::9]:443" // same /64
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("a network that guessed %d users' passwords may still log in: %d", networkLogins.Free+1, w.Code)
	}
}

// The login answer's token is named "token", with "jwt", its first name, as
// an alias holding the same value; either opens the API.
func TestLoginAnswersTokenAndItsAlias(t *testing.T) {
	s, hs := testServer(t)
	addUser(t, s, "admin", RoleAdmin, "correct horse battery")
	var ans map[string]string
	apiJSON(t, hs, "POST", "/api/auth", "", map[string]string{"username": "admin", "password": "correct horse battery"}, &ans, http.StatusOK)
	if ans["token"] == "" || ans["jwt"] != ans["token"] {
		t.Fatalf("login answer %v: want a token and the same value under jwt", ans)
	}
	if strings.Count(ans["token"], ".") == 2 {
		t.Errorf("token %q looks like a JWT; it is documented as opaque", ans["token"])
	}
	if status, b := call(t, hs, "GET", "/api/environments", ans["token"], nil); status != http.StatusOK {
		t.Fatalf("token does not open the API: %d %s", status, b)
	}
}
