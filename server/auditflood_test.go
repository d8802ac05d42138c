package server

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Refusals anyone can cause are aggregated: a minute of the same refusal
// from one network is one entry when it happens and one with the count when
// the minute ends, and one log line. Before, 100,000 forged requests replaced
// the whole audit log.
func TestRefusalFloodIsAggregated(t *testing.T) {
	s, hs := testServer(t)
	logs := &lockedBuffer{}
	s.log = slog.New(slog.NewTextHandler(logs, nil))
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	addUser(t, s, "admin", RoleAdmin, "correct horse battery")
	env := stage(t, s, nil)
	dev := newDevice(t, hs.Config.Handler, env, "edge-1")
	if status, _, perr := dev.sync(dev.firstContact()); status != http.StatusOK {
		t.Fatal(perr)
	}
	// 1,000 requests naming the environment with a MAC nobody can make.
	forger := newDevice(t, hs.Config.Handler, env, "edge-1")
	forger.mac = bytes.Repeat([]byte{7}, 32)
	for range 1000 {
		if status, _, _ := forger.sync(forger.ping()); status != http.StatusForbidden {
			t.Fatalf("forged request: %d", status)
		}
	}
	// 30 wrong passwords, most during the lockout they cause.
	for range 30 {
		r := httptest.NewRequest("POST", "/api/auth", strings.NewReader(`{"username":"admin","password":"guess"}`))
		r.RemoteAddr = "203.0.113.5:1"
		s.routes().ServeHTTP(httptest.NewRecorder(), r)
	}
	count := func() map[string][2]int { // action -> entries, total count
		entries, err := s.store.Audit(0, 1000, true)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string][2]int{}
		for _, e := range entries {
			if e.Refusal {
				c := m[e.Action]
				c[0]++
				c[1] += e.Count
				m[e.Action] = c
			}
		}
		return m
	}
	got := count()
	if got[auditIdentityRefused] != [2]int{1, 1} || got[auditLoginFailed] != [2]int{1, 1} || got[auditLoginLocked] != [2]int{1, 1} {
		t.Fatalf("during the minute: %v, want one entry of each refusal", got)
	}
	if n := logs.count("sync refused"); n != 1 {
		t.Fatalf("%d log lines for 1,000 refusals", n)
	}
	// The minute ends: one more entry each, with the rest counted.
	mu.Lock()
	now = now.Add(refusalWindow * time.Second)
	mu.Unlock()
	s.flush()
	got = count()
	if got[auditIdentityRefused] != [2]int{2, 1000} {
		t.Fatalf("identity refusals after the minute: %v entries/count, want 2 entries counting 1000", got[auditIdentityRefused])
	}
	if f, l := got[auditLoginFailed], got[auditLoginLocked]; f[0] != 2 || f[1]+l[1] != 30 {
		t.Fatalf("login refusals after the minute: failed %v, locked %v; want 30 in all", f, l)
	}
	// The changes and decisions are still there, and can be read alone.
	changes, err := s.store.Audit(0, 1000, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range changes {
		if e.Refusal {
			t.Fatalf("a refusal among the changes: %+v", e)
		}
	}
}
