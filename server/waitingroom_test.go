package server

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"outpost/protocol"
	"outpost/server/store"
	"outpost/snapshot"
)

type waitingList struct {
	Items []waitingView `json:"items"`
	Total int           `json:"total"`
}

func listWaiting(t *testing.T, hs *httptest.Server, token, query string) waitingList {
	t.Helper()
	status, body := call(t, hs, "GET", "/api/waiting-room"+query, token, nil)
	if status != http.StatusOK {
		t.Fatalf("waiting room: %d %s", status, body)
	}
	var l waitingList
	if err := json.Unmarshal(body, &l); err != nil {
		t.Fatal(err)
	}
	return l
}

// onboardingDevice is a device calling with the onboarding key (environment 0).
func onboardingDevice(t *testing.T, hs *httptest.Server, edgeID string) *device {
	return newDevice(t, hs.Config.Handler, 0, edgeID)
}

// call in: a device keeps signing until it holds the server's key.
func (d *device) callIn() (int, *protocol.SyncAnswer, *protocol.Error) {
	d.t.Helper()
	req := d.firstContact()
	req.EnvID = d.env
	req.Agent.Groups, req.Agent.Tags = []string{"shops"}, []string{"eu"}
	if d.mac != nil {
		req = d.ping()
	}
	return d.sync(req)
}

func TestWaitingRoomTrustFlow(t *testing.T) {
	s, hs := testServer(t)
	_, admin := addUser(t, s, "admin", RoleAdmin, "correct horse battery")
	_, helpdesk := addUser(t, s, "help", RoleHelpdesk, "correct horse battery")

	var key struct{ EdgeKey string }
	status, body := call(t, hs, "GET", "/api/edge/onboarding-key", admin, nil)
	if status != http.StatusOK || json.Unmarshal(body, &key) != nil {
		t.Fatalf("onboarding key: %d %s", status, body)
	}
	if k, err := protocol.ParseEdgeKey(key.EdgeKey); err != nil || k.EnvironmentID != 0 {
		t.Fatalf("onboarding key %q: %+v %v", key.EdgeKey, k, err)
	}

	dev := onboardingDevice(t, hs, "gw-17")
	for range 2 {
		status, ans, perr := dev.callIn()
		if status != http.StatusOK || ans.Trust != protocol.TrustWaiting || ans.EnvID != 0 || len(ans.Commands) != 0 || ans.Snapshot != nil || dev.mac != nil {
			t.Fatalf("unknown device: %d %+v %+v", status, ans, perr)
		}
	}
	// Waiting, it gets nothing: a snapshot it pushes is not taken.
	req := dev.firstContact()
	full := testSnapshot(1, snapshot.StateRunning)
	req.Snapshot = push(t, 1, 0, full, full)
	if status, ans, _ := dev.sync(req); status != http.StatusOK || ans.Snapshot != nil {
		t.Fatalf("waiting device's snapshot was taken: %+v", ans)
	}

	l := listWaiting(t, hs, helpdesk, "?q=gw-")
	if l.Total != 1 {
		t.Fatalf("waiting room: %+v", l)
	}
	w := l.Items[0]
	if w.EdgeID != "gw-17" || w.Hostname != "dev1" || w.AgentVersion != "test" || w.KeyFingerprint == "" ||
		w.FirstSeen == 0 || w.LastSeen < w.FirstSeen || len(w.Groups) != 1 || w.Tags[0] != "eu" || w.PublicKey != nil {
		t.Fatalf("waiting device shown as %+v", w)
	}
	if status, _ := call(t, hs, "POST", "/api/waiting-room/trust", helpdesk, map[string]any{"ids": []uint64{w.ID}}); status != http.StatusForbidden {
		t.Fatalf("helpdesk trusted a device: %d", status)
	}
	status, body = call(t, hs, "POST", "/api/waiting-room/trust", admin, map[string]any{"ids": []uint64{w.ID, 999}})
	if status != http.StatusOK {
		t.Fatalf("trust: %d %s", status, body)
	}
	var trusted struct {
		Environments []environmentView
		Problems     []string
	}
	if err := json.Unmarshal(body, &trusted); err != nil || len(trusted.Environments) != 1 || len(trusted.Problems) != 1 {
		t.Fatalf("trust answer: %s", body)
	}
	env := trusted.Environments[0]
	if env.EdgeID != "gw-17" || env.Name != "dev1" {
		t.Fatalf("trusted environment: %+v", env)
	}
	if l := listWaiting(t, hs, admin, ""); l.Total != 0 {
		t.Fatalf("trusted device still waits: %+v", l)
	}

	// Its next call learns its environment and the server's key, then MACs.
	status, ans, perr := dev.callIn()
	if status != http.StatusOK || ans.Trust != protocol.TrustTrusted || ans.EnvID != env.ID || ans.Server == nil {
		t.Fatalf("first call after trust: %d %+v %+v", status, ans, perr)
	}
	snapReq := dev.ping()
	snapReq.Include |= protocol.IncludeSnapshot
	snapReq.Snapshot = push(t, 1, 0, full, full)
	if status, ans, perr := dev.sync(snapReq); status != http.StatusOK || ans.Snapshot == nil || ans.Snapshot.Stored != 1 {
		t.Fatalf("trusted device's MACed snapshot: %d %+v %+v", status, ans, perr)
	}
}

func TestWaitingRoomReject(t *testing.T) {
	s, hs := testServer(t)
	_, admin := addUser(t, s, "admin", RoleAdmin, "correct horse battery")
	dev := onboardingDevice(t, hs, "intruder")
	if status, ans, _ := dev.callIn(); status != http.StatusOK || ans.Trust != protocol.TrustWaiting {
		t.Fatalf("arrival: %d %+v", status, ans)
	}
	l := listWaiting(t, hs, admin, "")
	status, body := call(t, hs, "POST", "/api/waiting-room/reject", admin, map[string]any{"ids": []uint64{l.Items[0].ID}})
	if status != http.StatusOK {
		t.Fatalf("reject: %d %s", status, body)
	}
	for _, edgeID := range []string{"intruder", "renamed"} { // the key is refused, whatever edge ID it claims
		dev.edgeID = edgeID
		if status, _, perr := dev.callIn(); status != http.StatusForbidden || perr.Code != protocol.CodeRejected {
			t.Fatalf("rejected device as %s: %d %+v", edgeID, status, perr)
		}
	}
	if l := listWaiting(t, hs, admin, ""); l.Total != 0 {
		t.Fatalf("rejected device came back: %+v", l)
	}
	entries, _ := s.store.Audit(0, 100, true)
	found := false
	for _, e := range entries {
		found = found || e.Action == auditDeviceRejected
	}
	if !found {
		t.Fatal("rejection not audited")
	}
	// And after a restart of the server's memory, still refused.
	rm, err := loadRoom(s.store, s.room.Limiter)
	if err != nil {
		t.Fatal(err)
	}
	s.room = rm
	if status, _, perr := dev.callIn(); status != http.StatusForbidden || perr.Code != protocol.CodeRejected {
		t.Fatalf("rejected device after reload: %d %+v", status, perr)
	}
}

func TestWaitingRoomRules(t *testing.T) {
	s, hs := testServer(t)
	es := s.edgeSettings()
	pre := onboardingDevice(t, hs, "preauthorized-1")
	es.PreauthorizedEdgeIDs = []string{"preauthorized-1 " + keyFingerprint(pre.key.Public().(ed25519.PublicKey))}
	byKey := onboardingDevice(t, hs, "anything")
	es.PreauthorizedKeys = []string{keyFingerprint(byKey.key.Public().(ed25519.PublicKey))}
	if err := s.putEdgeSettings(es); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*device{pre, byKey} {
		status, ans, perr := d.callIn()
		if status != http.StatusOK || ans.Trust != protocol.TrustTrusted || ans.EnvID == 0 || ans.Server == nil {
			t.Fatalf("preauthorized %s: %d %+v %+v", d.edgeID, status, ans, perr)
		}
		if status, _, perr := d.sync(d.ping()); status != http.StatusOK {
			t.Fatalf("preauthorized %s, MACed: %d %+v", d.edgeID, status, perr)
		}
	}
	other := onboardingDevice(t, hs, "stranger")
	if _, ans, _ := other.callIn(); ans.Trust != protocol.TrustWaiting {
		t.Fatalf("a stranger was trusted: %+v", ans)
	}
	es.TrustOnFirstConnect = true
	if err := s.putEdgeSettings(es); err != nil {
		t.Fatal(err)
	}
	tofu := onboardingDevice(t, hs, "tofu")
	if _, ans, _ := tofu.callIn(); ans == nil || ans.Trust != protocol.TrustTrusted {
		t.Fatalf("trust on first connect: %+v", ans)
	}
}

// TestWaitingRoomFlood: new devices past the per-address rate get "slow
// down", past the room's size "full"; trusted devices go on throughout.
func TestWaitingRoomFlood(t *testing.T) {
	s, hs := testServer(t)
	es := s.edgeSettings()
	es.WaitingRoomMax, es.NewDevicesPerMinute = 20, 5
	if err := s.putEdgeSettings(es); err != nil {
		t.Fatal(err)
	}
	env := stage(t, s, nil)
	trusted := newDevice(t, hs.Config.Handler, env, "trusted-1")
	if status, _, perr := trusted.sync(trusted.firstContact()); status != http.StatusOK {
		t.Fatal(perr)
	}

	// One address: 5 new devices a minute, then slow down.
	var slow, waiting int
	var early *device
	for i := range 12 {
		d := onboardingDevice(t, hs, fmt.Sprint("flood-a-", i))
		status, _, perr := d.callIn()
		switch {
		case status == http.StatusOK:
			waiting++
			early = d
		case status == http.StatusTooManyRequests && perr.Code == protocol.CodeSlowDown:
			slow++
		default:
			t.Fatalf("flood device %d: %d %+v", i, status, perr)
		}
		if status, _, perr := trusted.sync(trusted.ping()); status != http.StatusOK {
			t.Fatalf("trusted device refused during the flood: %d %+v", status, perr)
		}
	}
	if waiting != 5 || slow != 7 {
		t.Fatalf("from one address: %d waiting, %d slowed down; want 5 and 7", waiting, slow)
	}
	// Many addresses: the room fills at 20, then "full".
	var full int
	for i := range 30 {
		d := onboardingDevice(t, hs, fmt.Sprint("flood-b-", i))
		d.remote = fmt.Sprintf("198.51.100.%d:4000", i)
		status, _, perr := d.callIn()
		switch {
		case status == http.StatusOK:
			waiting++
		case status == http.StatusServiceUnavailable && perr.Code == protocol.CodeWaitingRoomFull:
			full++
		default:
			t.Fatalf("flood device b%d: %d %+v", i, status, perr)
		}
	}
	if waiting != 20 || full != 15 {
		t.Fatalf("%d waiting, %d refused as full; want 20 and 15", waiting, full)
	}
	if status, _, perr := trusted.sync(trusted.ping()); status != http.StatusOK {
		t.Fatalf("trusted device after the flood: %d %+v", status, perr)
	}
	// A device already waiting is not refused by the full room or the rate.
	if status, ans, perr := early.callIn(); status != http.StatusOK || ans.Trust != protocol.TrustWaiting {
		t.Fatalf("a waiting device calling again in a full room: %d %+v %+v", status, ans, perr)
	}
	if got := scrape(t, s, "outpost_waiting_room_devices"); got != 20 {
		t.Fatalf("waiting room gauge: %v", got)
	}
}

// TestWaitingRoomUnverifiedNotAudited: requests proving no key write no audit
// entry and are logged once a minute per address; a refusal of a verified
// key is audited.
func TestWaitingRoomUnverifiedNotAudited(t *testing.T) {
	s, hs := testServer(t)
	var logged bytes.Buffer
	s.log = slog.New(slog.NewTextHandler(&logged, nil))
	before, _ := s.store.Audit(0, 1000, true)
	for i := range 50 {
		d := onboardingDevice(t, hs, fmt.Sprint("junk-", i))
		body, enc, _ := protocol.WriteBody(&protocol.SyncRequest{Version: protocol.Version, EdgeID: "junk"})
		if status, _, perr := d.post(body, enc); status != http.StatusForbidden || perr.Code != protocol.CodeIdentity {
			t.Fatalf("unsigned request %d: %d %+v", i, status, perr)
		}
	}
	if after, _ := s.store.Audit(0, 1000, true); len(after) != len(before) {
		t.Fatalf("unsigned requests wrote %d audit entries", len(after)-len(before))
	}
	if n := strings.Count(logged.String(), "unverified"); n != 1 {
		t.Fatalf("50 unsigned requests from one address logged %d times, want 1:\n%s", n, logged.String())
	}

	d := onboardingDevice(t, hs, "gw-1")
	if status, _, perr := d.callIn(); status != http.StatusOK {
		t.Fatalf("%d %+v", status, perr)
	}
	d.edgeID = "gw-2" // the same key under another edge ID
	if status, _, _ := d.sync(d.firstContact()); status != http.StatusForbidden {
		t.Fatalf("a waiting key under another edge ID: %d", status)
	}
	after, _ := s.store.Audit(0, 1000, true)
	var refused int
	for _, e := range after {
		if e.Action == auditIdentityRefused {
			refused++
		}
	}
	if refused != 1 {
		t.Fatalf("%d identity refusals audited, want the verified key's one", refused)
	}
}

// TestWaitingRoomCapConcurrent: new devices arriving together do not
// overshoot the room's size.
func TestWaitingRoomCapConcurrent(t *testing.T) {
	s, hs := testServer(t)
	es := s.edgeSettings()
	es.WaitingRoomMax, es.NewDevicesPerMinute, es.NewDevicesPerNetwork = 2, 1000, 1000
	if err := s.putEdgeSettings(es); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	statuses := make([]int, 200)
	for i := range statuses {
		d := onboardingDevice(t, hs, fmt.Sprint("c-", i))
		d.remote = fmt.Sprintf("198.51.%d.%d:4000", i/100, i%100)
		req := d.firstContact()
		req.Proof.Counter = 1
		if err := protocol.SealEnrolled(req, req.Proof, protocol.EnrollKey(d.secret), func(in []byte) []byte { return ed25519.Sign(d.key, in) }); err != nil {
			t.Fatal(err)
		}
		body, enc, err := protocol.WriteBody(req)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			statuses[i], _, _ = d.post(body, enc)
		}()
	}
	close(start)
	wg.Wait()
	var ok, full int
	for _, st := range statuses {
		switch st {
		case http.StatusOK:
			ok++
		case http.StatusServiceUnavailable:
			full++
		}
	}
	stored, err := s.store.Waiting()
	if err != nil {
		t.Fatal(err)
	}
	if ok != 2 || full != 198 || len(stored) != 2 || s.room.Size() != 2 || s.room.Placing() != 0 {
		t.Fatalf("200 devices at once into a room of 2: %d waiting, %d full, %d stored, %d in memory, %d being placed",
			ok, full, len(stored), s.room.Size(), s.room.Placing())
	}
}

// TestWaitingRoomPreauthorizedEdgeIDOnce: a preauthorized edge ID names its
// device's key too. A squatter claiming it first with another key waits for
// an operator, audited as a claim, and does not keep the real device out,
// which is trusted at its first call. A preauthorized key is trusted as
// before.
func TestWaitingRoomPreauthorizedEdgeIDOnce(t *testing.T) {
	s, hs := testServer(t)
	_, admin := addUser(t, s, "admin", RoleAdmin, "correct horse battery")
	es := s.edgeSettings()
	squatter, real := onboardingDevice(t, hs, "shop-42"), onboardingDevice(t, hs, "shop-42")
	es.PreauthorizedEdgeIDs = []string{"shop-42 " + keyFingerprint(real.key.Public().(ed25519.PublicKey))}
	byKey := onboardingDevice(t, hs, "shop-43")
	es.PreauthorizedKeys = []string{keyFingerprint(byKey.key.Public().(ed25519.PublicKey))}
	if err := s.putEdgeSettings(es); err != nil {
		t.Fatal(err)
	}
	if status, ans, perr := squatter.callIn(); status != http.StatusOK || ans.Trust != protocol.TrustWaiting || ans.EnvID != 0 {
		t.Fatalf("a squatter claiming shop-42: %d %+v %+v", status, ans, perr)
	}
	if status, ans, perr := real.callIn(); status != http.StatusOK || ans.Trust != protocol.TrustTrusted || ans.EnvID == 0 {
		t.Fatalf("the device the rule names, after the squatter: %d %+v %+v", status, ans, perr)
	}
	if w, _ := s.store.Waiting(); len(w) != 1 || w[0].EdgeID != "shop-42" || w[0].KeyFingerprint != keyFingerprint(squatter.key.Public().(ed25519.PublicKey)) {
		t.Fatalf("waiting room: %+v", w)
	}
	var audit auditPage
	apiJSON(t, hs, "GET", "/api/audit", admin, nil, &audit, http.StatusOK)
	if !slices.ContainsFunc(audit.Entries, func(e store.AuditEntry) bool {
		return e.Action == auditDeviceArrived && strings.Contains(e.Detail, "claims a preauthorized edge ID")
	}) {
		t.Fatalf("the squat is not in the audit log: %+v", audit.Entries)
	}
	if status, ans, perr := byKey.callIn(); status != http.StatusOK || ans.Trust != protocol.TrustTrusted {
		t.Fatalf("preauthorized key: %d %+v %+v", status, ans, perr)
	}
	// The claim survives a restart.
	rm, err := loadRoom(s.store, s.room.Limiter)
	if err != nil {
		t.Fatal(err)
	}
	if env, _ := rm.EdgeEnv("shop-42"); env == 0 {
		t.Fatal("a restarted room forgot that shop-42 is claimed")
	}
}

// TestWaitingRoomSeenKeptAfterTake: last-seen times taken by a flush stay
// shown, and go back for the next flush when the write fails.
func TestWaitingRoomSeenKeptAfterTake(t *testing.T) {
	s, hs := testServer(t)
	_, admin := addUser(t, s, "admin", RoleAdmin, "correct horse battery")
	d := onboardingDevice(t, hs, "w1")
	if status, _, perr := d.callIn(); status != http.StatusOK {
		t.Fatalf("%d %+v", status, perr)
	}
	id := listWaiting(t, hs, admin, "").Items[0].ID
	s.room.Touch(id, 1<<40, 99, "")
	taken := s.room.TakeSeen()
	if got := listWaiting(t, hs, admin, "").Items[0].LastSeen; got != 1<<40 {
		t.Fatalf("last seen after take: %d, want %d", got, int64(1<<40))
	}
	s.room.PutBackSeen(taken) // the write failed
	s.room.PutBackSeen(map[uint64]store.WaitingSeen{id + 100: {At: 1}})
	again := s.room.TakeSeen()
	if len(again) != 1 || again[id].Counter != 99 || again[id].At != 1<<40 {
		t.Fatalf("put back: %+v", again)
	}
}
