package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"outpost/protocol"
	"outpost/server/store"
)

// identityRefusals counts the audit log's identity refusals of env.
func identityRefusals(t *testing.T, s *Server, env uint64) int {
	t.Helper()
	entries, err := s.store.Audit(0, 1000, true)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if e.Action == auditIdentityRefused && e.Target == envTarget(env) {
			n += max(e.Count, 1)
		}
	}
	return n
}

// TestSquattingOnAPreStagedEnvironment: a device that knows only a
// pre-staged environment's ID (async or standard), or holds an edge key
// without its secret or with another environment's, cannot bind it; each try
// is refused and audited, and the device given the key binds afterwards.
func TestSquattingOnAPreStagedEnvironment(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	h := hs.Config.Handler
	var other createdEnvironment
	apiJSON(t, hs, "POST", "/api/environments", tok, map[string]any{"name": "other"}, &other, http.StatusCreated)
	otherKey, _ := protocol.ParseEdgeKey(other.EdgeKey)
	for _, mode := range []string{store.ModeAsync, store.ModeStandard} {
		t.Run(mode, func(t *testing.T) {
			var e createdEnvironment
			apiJSON(t, hs, "POST", "/api/environments", tok, map[string]any{"name": "ship-" + mode, "mode": mode}, &e, http.StatusCreated)
			if e.Enrollment != enrollmentPending || !strings.Contains(e.DockerRun, e.EdgeKey) {
				t.Fatalf("created: %+v", e)
			}
			path := "/edge/v1/sync"
			if mode == store.ModeStandard {
				path = "/edge/v1/poll"
			}
			squat := func(name, secret string) {
				d := newDevice(t, h, e.ID, "squatter-"+name)
				d.secret, d.path = secret, path
				status, _, perr := d.sync(d.firstContact())
				if status != http.StatusForbidden || perr == nil || perr.Code != protocol.CodeIdentity {
					t.Fatalf("squat with %s: %d %+v", name, status, perr)
				}
			}
			before := identityRefusals(t, s, e.ID)
			squat("the ID alone", "")
			squat("a guessed secret", strings.Repeat("g", protocol.EnrollSecretSize))
			squat("another environment's secret", otherKey.Secret)
			if got := identityRefusals(t, s, e.ID) - before; got != 3 {
				t.Errorf("%d identity refusals audited for environment %d, want 3", got, e.ID)
			}
			stored, err := s.store.Environment(e.ID)
			if err != nil || stored.EdgeID != "" || stored.EnrollKey == nil {
				t.Fatalf("after the squats: %+v %v", stored, err)
			}
			// The real device, given the key, binds; the secret is spent.
			real := keyDevice(t, h, e.EdgeKey, "real-"+mode)
			real.path = path
			if status, _, perr := real.sync(real.firstContact()); status != http.StatusOK {
				t.Fatalf("the device given the key: %d %+v", status, perr)
			}
			if stored, _ := s.store.Environment(e.ID); stored.EdgeID != "real-"+mode || stored.EnrollKey != nil {
				t.Fatalf("bound: %+v", stored)
			}
			// The spent key binds no second device.
			copycat := keyDevice(t, h, e.EdgeKey, "copy-"+mode)
			copycat.path = path
			if status, _, _ := copycat.sync(copycat.firstContact()); status != http.StatusForbidden {
				t.Fatalf("a second device with the spent key: %d", status)
			}
		})
	}
}

// TestEdgeKeyIsShownOnceAndReissued: the secret is in the creation answer
// only; no API answer carries it or its hash. Re-issuing revokes the old
// secret, unbinds a bound device (refused from then on) and lets the device
// with the new key bind.
func TestEdgeKeyIsShownOnceAndReissued(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	_, helpdesk := addUser(t, s, "help", RoleHelpdesk, "pw")
	h := hs.Config.Handler
	var e createdEnvironment
	apiJSON(t, hs, "POST", "/api/environments", tok, map[string]any{"name": "ship"}, &e, http.StatusCreated)
	first, _ := protocol.ParseEdgeKey(e.EdgeKey)
	stored, _ := s.store.Environment(e.ID)
	path := fmt.Sprintf("/api/environments/%d", e.ID)
	noSecret := func(when string) {
		t.Helper()
		for _, p := range []string{path, "/api/environments"} {
			status, body := call(t, hs, "GET", p, tok, nil)
			if status != http.StatusOK || bytes.Contains(body, []byte("enrollKey")) || strings.Contains(string(body), e.EdgeKey) {
				t.Fatalf("%s: GET %s shows the secret or its hash: %d %s", when, p, status, body)
			}
			if k, _ := json.Marshal(stored.EnrollKey); len(stored.EnrollKey) > 0 && bytes.Contains(body, bytes.Trim(k, `"`)) {
				t.Fatalf("%s: GET %s shows the secret's hash", when, p)
			}
		}
	}
	noSecret("pending")
	var v environmentView
	apiJSON(t, hs, "GET", path, tok, nil, &v, http.StatusOK)
	if v.EdgeKey != "" || v.Enrollment != enrollmentPending {
		t.Fatalf("a pending environment's view: edge key %q, enrollment %q", v.EdgeKey, v.Enrollment)
	}

	if status, _ := call(t, hs, "POST", path+"/edge-key", helpdesk, nil); status != http.StatusForbidden {
		t.Fatalf("helpdesk re-issued a key: %d", status)
	}
	var again createdEnvironment
	apiJSON(t, hs, "POST", path+"/edge-key", tok, nil, &again, http.StatusOK)
	second, err := protocol.ParseEdgeKey(again.EdgeKey)
	if err != nil || second.Secret == "" || second.Secret == first.Secret || !strings.Contains(again.DockerRun, again.EdgeKey) {
		t.Fatalf("re-issued: %+v %v", again, err)
	}
	old := keyDevice(t, h, e.EdgeKey, "old")
	if status, _, _ := old.sync(old.firstContact()); status != http.StatusForbidden {
		t.Fatalf("the revoked key bound a device: %d", status)
	}
	dev := keyDevice(t, h, again.EdgeKey, "dev-1")
	if status, _, perr := dev.sync(dev.firstContact()); status != http.StatusOK {
		t.Fatalf("the new key: %d %+v", status, perr)
	}
	for range 3 {
		if status, _, perr := dev.sync(dev.ping()); status != http.StatusOK {
			t.Fatalf("bound device: %d %+v", status, perr)
		}
	}
	v = environmentView{}
	apiJSON(t, hs, "GET", path, tok, nil, &v, http.StatusOK)
	if k, err := protocol.ParseEdgeKey(v.EdgeKey); err != nil || k.Secret != "" || k.EnvironmentID != e.ID || v.Enrollment != "" {
		t.Fatalf("a bound environment's view: %q %+v %v", v.EdgeKey, v, err)
	}

	// Re-issued while bound: the device is unbound and refused, its cached
	// key and counters forgotten, and the replacement binds from counter 1.
	var third createdEnvironment
	apiJSON(t, hs, "POST", path+"/edge-key", tok, nil, &third, http.StatusOK)
	if status, _, perr := dev.sync(dev.ping()); status != http.StatusForbidden {
		t.Fatalf("the unbound device after a re-issue: %d %+v", status, perr)
	}
	repl := keyDevice(t, h, third.EdgeKey, "dev-2")
	if status, _, perr := repl.sync(repl.firstContact()); status != http.StatusOK {
		t.Fatalf("the replacement: %d %+v", status, perr)
	}
	if status, _, perr := repl.sync(repl.ping()); status != http.StatusOK {
		t.Fatalf("the replacement, MACed: %d %+v", status, perr)
	}
	entries, _ := s.store.Audit(0, 100, false)
	if n := len(slices.DeleteFunc(entries, func(a store.AuditEntry) bool { return a.Action != auditEdgeKeyReissue })); n != 2 {
		t.Fatalf("%d re-issues audited, want 2", n)
	}
	if status, _ := call(t, hs, "POST", "/api/environments/999/edge-key", tok, nil); status != http.StatusNotFound {
		t.Fatalf("re-issue for no environment: %d", status)
	}
}

// An environment from before enrollment secrets, not bound yet, cannot be
// bound until its key is re-issued, and says so.
func TestLegacyUnboundEnvironmentNeedsANewKey(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	e := &store.Environment{Name: "old", Mode: store.ModeAsync, Trusted: true}
	if err := s.store.CreateEnvironment(e); err != nil {
		t.Fatal(err)
	}
	s.indexEnvironment(e)
	var v environmentView
	apiJSON(t, hs, "GET", fmt.Sprintf("/api/environments/%d", e.ID), tok, nil, &v, http.StatusOK)
	if v.Enrollment != enrollmentNeeded || v.EdgeKey != "" {
		t.Fatalf("view: %+v", v)
	}
	d := newDevice(t, hs.Config.Handler, e.ID, "old-1")
	if status, _, perr := d.sync(d.firstContact()); status != http.StatusForbidden || !strings.Contains(perr.Message, "re-issue") {
		t.Fatalf("binding a legacy environment: %d %+v", status, perr)
	}
}
