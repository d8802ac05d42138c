package server

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"outpost/protocol"
	"outpost/server/store"
	"outpost/snapshot"
	"outpost/waitingroom"
)

// uiClient serves UI requests with a session token, as a same-origin
// browser sends them.
type uiClient struct {
	t   *testing.T
	h   http.Handler
	tok string
}

func (c *uiClient) do(method, target string, form url.Values) (int, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, target, body)
	r.RemoteAddr = "192.0.2.50:4444"
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	r.AddCookie(&http.Cookie{Name: "outpost_token", Value: c.tok})
	w := httptest.NewRecorder()
	c.h.ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

// TestUIWaitingRoomOverRealServer trusts devices from the waiting room page
// of a real server: with an edge group and a tag, one of them carrying the
// edge ID of a bound environment, and as a read-only user (refused).
func TestUIWaitingRoomOverRealServer(t *testing.T) {
	s, hs := testServer(t)
	_, admin := addUser(t, s, "ops", RoleAdmin, "correct horse battery")
	_, viewer := addUser(t, s, "viewer", RoleReadOnly, "correct horse battery")
	taken := bound(t, s, hs.Config.Handler, "shop-1") // environment 1, edge ID shop-1
	tag := &store.Tag{Name: "eu"}
	if err := s.store.CreateTag(tag); err != nil {
		t.Fatal(err)
	}
	s.fleetIndex().putTag(*tag)
	group := &store.EdgeGroup{Name: "pilot"}
	if err := s.store.CreateEdgeGroup(group); err != nil {
		t.Fatal(err)
	}
	s.fleetIndex().putEdgeGroup(*group)
	var devs []*device
	for _, id := range []string{"till-a", "till-b", "shop-1"} {
		d := onboardingDevice(t, hs, id)
		if status, _, perr := d.callIn(); status != http.StatusOK {
			t.Fatalf("%s: %d %+v", id, status, perr)
		}
		devs = append(devs, d)
	}
	ui := &uiClient{t: t, h: s.uiHandler(), tok: admin}
	status, body := ui.do("GET", "/waiting-room?sort=edgeId", nil)
	if status != http.StatusOK {
		t.Fatalf("waiting room: %d", status)
	}
	for _, want := range []string{"till-a", "till-b", "3 waiting", "groups shops", "tags eu", strings.ReplaceAll(keyFingerprint(devs[0].key.Public().(ed25519.PublicKey)), "+", "&#43;"),
		"Edge ID already bound to", `href="/environments/1"`, "Trusting makes a new environment beside it", `data-copy="docker-run"`} {
		if !strings.Contains(body, want) {
			t.Errorf("waiting room lacks %q", want)
		}
	}
	if i, j := strings.Index(body, "till-a"), strings.Index(body, "till-b"); i < 0 || j < i {
		t.Error("sort=edgeId does not list till-a before till-b")
	}

	// A read-only user sees the devices, no buttons, and is refused.
	ro := &uiClient{t: t, h: ui.h, tok: viewer}
	if _, body := ro.do("GET", "/waiting-room", nil); strings.Contains(body, `value="trust"`) || !strings.Contains(body, "till-a") {
		t.Error("a read-only user's waiting room shows a trust button, or no device")
	}
	ids := s.room.IDs("till", math.MaxUint64)
	if status, _ := ro.do("POST", "/waiting-room/action", url.Values{"action": {"trust"}, "id": {fmt.Sprint(ids[0])}}); status != http.StatusForbidden {
		t.Fatalf("read-only trust: %d", status)
	}

	// Trust all that match "till" and the conflicting one, with the group
	// and the tag. A till arriving after the page was read is not shown,
	// so it is left waiting.
	_, page := ui.do("GET", "/waiting-room?q=till", nil)
	upto, shown := hiddenField(t, page, "upto"), hiddenField(t, page, "shown")
	if shown != "2" {
		t.Fatalf("the page of till shows %s devices, want 2", shown)
	}
	late := onboardingDevice(t, hs, "till-late")
	if status, _, perr := late.callIn(); status != http.StatusOK {
		t.Fatalf("till-late: %d %+v", status, perr)
	}
	status, body = ui.do("POST", "/waiting-room/action", url.Values{"action": {"trust"}, "all": {"1"}, "q": {"till"}, "upto": {upto}, "shown": {shown},
		"group": {fmt.Sprint(group.ID)}, "tag": {fmt.Sprint(tag.ID)}})
	if status != http.StatusOK || !strings.Contains(body, "2 devices trusted") {
		t.Fatalf("trust: %d %s", status, body)
	}
	if left := s.room.IDs("till", math.MaxUint64); len(left) != 1 || s.room.List(waitingroom.Query{Q: "till", Limit: 1}).Items[0].EdgeID != "till-late" {
		t.Fatalf("after trusting all the page showed, waiting: %v, want till-late alone", left)
	}
	// Without the page's bounds, "all" is refused rather than guessed.
	if status, body := ui.do("POST", "/waiting-room/action", url.Values{"action": {"trust"}, "all": {"1"}, "q": {"till"}}); status != http.StatusBadRequest || !strings.Contains(body, "does not say which devices it showed") {
		t.Fatalf("all without upto and shown: %d", status)
	}
	if status, _ := ui.do("POST", "/waiting-room/action", url.Values{"action": {"reject"}, "id": {fmt.Sprint(s.room.IDs("till-late", math.MaxUint64)[0])}}); status != http.StatusOK {
		t.Fatalf("reject till-late: %d", status)
	}
	confl := s.room.IDs("shop-1", math.MaxUint64)
	status, body = ui.do("POST", "/waiting-room/action", url.Values{"action": {"trust"}, "id": {fmt.Sprint(confl[0])}})
	if status != http.StatusOK || !strings.Contains(body, "which had this edge ID and keeps its own key") {
		t.Fatalf("trust the conflicting device: %d %s", status, body)
	}
	if left := s.room.IDs("", math.MaxUint64); len(left) != 0 {
		t.Fatalf("still waiting: %v", left)
	}
	// What happened, in the store: the two tills are environments with the
	// tag, in the group; the bound environment kept its key and works.
	members := s.edgeGroupMembers(group.ID)
	envs, _ := s.store.Environments()
	var tills int
	for _, e := range envs {
		if strings.HasPrefix(e.EdgeID, "till-") {
			tills++
			if !slices.Contains(e.TagIDs, tag.ID) || !slices.Contains(members, e.ID) {
				t.Errorf("environment %d (%s): tags %v, in group %v", e.ID, e.EdgeID, e.TagIDs, slices.Contains(members, e.ID))
			}
		}
	}
	if tills != 2 {
		t.Fatalf("%d till environments, want 2", tills)
	}
	if status, _, perr := taken.sync(taken.ping()); status != http.StatusOK {
		t.Fatalf("the environment whose edge ID was claimed: %d %+v", status, perr)
	}
	// The trust was audited for the UI user, from the browser's address.
	entries, _ := s.store.Audit(0, 50, false)
	var audited int
	for _, e := range entries {
		if e.Action == auditDeviceTrusted && e.Actor == "ops" && e.Remote == "192.0.2.50:4444" {
			audited++
		}
	}
	if audited != 3 {
		t.Fatalf("%d trust entries by ops from the browser, want 3", audited)
	}

	// The rules form checks what the API checks.
	status, body = ui.do("POST", "/waiting-room/rules", url.Values{"preauthorizedEdgeIds": {"serial-1"}, "waitingRoomMax": {"10"},
		"perSource": {"1"}, "perNetwork": {"2"}, "total": {"3"}, "expiry": {"600"}})
	if status != http.StatusBadRequest || !strings.Contains(body, "The rules were not saved") {
		t.Fatalf("a bare preauthorized edge ID: %d", status)
	}
	status, _ = ui.do("POST", "/waiting-room/rules", url.Values{"preauthorizedEdgeIds": {"serial-1 " + keyFingerprint(devs[0].key.Public().(ed25519.PublicKey))},
		"waitingRoomMax": {"10"}, "perSource": {"1"}, "perNetwork": {"2"}, "total": {"3"}, "expiry": {"600"}})
	if set := s.edgeSettings(); status != http.StatusSeeOther || set.WaitingRoomMax != 10 || set.NewDevicesTotal != 3 || len(set.PreauthorizedEdgeIDs) != 1 {
		t.Fatalf("rules: %d, settings %+v", status, set)
	}
	old, _ := s.onboardingKey()
	if status, _ := ui.do("POST", "/waiting-room/rotate", url.Values{}); status != http.StatusSeeOther {
		t.Fatalf("rotate: %d", status)
	}
	if k, _ := s.onboardingKey(); k == old {
		t.Fatal("the onboarding key did not change")
	}
}

// TestSnapshotHistoryRebuildsEveryPoint pushes a full snapshot and 40
// deltas, then rebuilds each point from the history: each must be the
// snapshot the device had then. Every KeyframeEvery deltas an entry keeps
// the whole snapshot.
func TestSnapshotHistoryRebuildsEveryPoint(t *testing.T) {
	s, _ := testServer(t)
	e := &store.Environment{Name: "ship", Mode: store.ModeAsync, Trusted: true, Created: time.Now().Unix()}
	if err := s.store.CreateEnvironment(e); err != nil {
		t.Fatal(err)
	}
	b := uiBackend{s}
	var states []*snapshot.Snapshot
	cur := &snapshot.Snapshot{Engine: snapshot.Engine{Hostname: "ship"}}
	for seq := uint64(1); seq <= 41; seq++ {
		next := &snapshot.Snapshot{Engine: cur.Engine, Containers: slices.Clone(cur.Containers)}
		next.Containers = append(next.Containers, snapshot.Container{ID: fmt.Sprintf("%012x", seq), Name: fmt.Sprintf("c%d", seq), State: snapshot.StateRunning})
		if seq%3 == 0 {
			next.Containers[0].State = snapshot.StateExited + snapshot.State(seq%2)
		}
		snapshot.Normalize(next)
		var p *protocol.SnapshotPush
		if seq == 1 {
			p = push(t, 1, 0, next, next)
		} else {
			d, err := snapshot.Compute(cur, next)
			if err != nil {
				t.Fatal(err)
			}
			p = push(t, seq, seq-1, d, next)
		}
		if ack, err := s.ingestSnapshot(e.ID, p, time.Now()); err != nil || ack.SendFull {
			t.Fatalf("seq %d: %v %+v", seq, err, ack)
		}
		states, cur = append(states, next), next
	}
	hist, err := s.store.History(e.ID)
	if err != nil {
		t.Fatal(err)
	}
	var keyframes []uint64
	for _, h := range hist {
		if len(h.Full) > 0 {
			keyframes = append(keyframes, h.Seq)
		}
	}
	if want := []uint64{1, 17, 33}; !slices.Equal(keyframes, want) {
		t.Fatalf("entries keeping the whole snapshot: %v, want %v", keyframes, want)
	}
	for i, want := range states {
		got, err := b.SnapshotAt(e.ID, uint64(i+1))
		if err != nil {
			t.Fatalf("seq %d: %v", i+1, err)
		}
		gb, _ := protocol.Marshal(got.Docker)
		wb, _ := protocol.Marshal(want)
		if !bytes.Equal(gb, wb) {
			t.Fatalf("seq %d rebuilt as %d containers, want %d", i+1, len(got.Docker.Containers), len(want.Containers))
		}
	}
	if _, err := b.SnapshotAt(e.ID, 99); err == nil {
		t.Fatal("a seq never pushed was rebuilt")
	}
	// Without its keyframe (trimmed away), a delta cannot be rebuilt, and
	// the history says so.
	entries, _ := b.History(e.ID)
	if !entries[0].Viewable || !entries[len(entries)-1].Viewable {
		t.Fatal("points with their keyframe are not viewable")
	}
	hist[0].Full = nil
	if rebuildable(hist, 5) || !rebuildable(hist, 20) {
		t.Fatal("rebuildable does not follow the keyframes")
	}
	// A chain that rebuilds to another snapshot than the one stored with
	// the entry is refused, not shown as the past.
	next := &snapshot.Snapshot{Engine: cur.Engine, Containers: cur.Containers[1:]}
	d, err := snapshot.Compute(cur, next)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := protocol.Marshal(d)
	sum, _ := snapshot.Hash(next)
	for _, tc := range []struct {
		hash []byte
		ok   bool
	}{{sum[:snapshot.HashSize], true}, {bytes.Repeat([]byte{7}, snapshot.HashSize), false}} {
		if err := s.store.PutSnapshot(e.ID, &store.Snapshot{Seq: 42}, &store.HistoryEntry{Seq: 42, Base: 41, Kind: "delta", Data: data, Hash: tc.hash}); err != nil {
			t.Fatal(err)
		}
		got, err := b.SnapshotAt(e.ID, 42)
		if tc.ok && (err != nil || len(got.Docker.Containers) != len(next.Containers)) {
			t.Fatalf("a delta entry whose hash matches: %v", err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "does not rebuild to the snapshot stored then")) {
			t.Fatalf("a delta entry whose hash does not match: %v", err)
		}
	}
}

// TestUIAddEditDeleteOverRealServer adds an environment from the UI's form
// with a tag and a group, binds a device with the key the page showed,
// edits it, and deletes it after the confirmation.
func TestUIAddEditDeleteOverRealServer(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "ops", RoleOperator, "correct horse battery")
	tag := &store.Tag{Name: "eu"}
	if err := s.store.CreateTag(tag); err != nil {
		t.Fatal(err)
	}
	s.fleetIndex().putTag(*tag)
	g := &store.EnvironmentGroup{Name: "north"}
	if err := s.store.CreateEnvironmentGroup(g); err != nil {
		t.Fatal(err)
	}
	s.fleetIndex().putEnvGroup(*g)
	ui := &uiClient{t: t, h: s.uiHandler(), tok: tok}

	// A tag that does not exist: refused, and nothing is stored.
	if status, _ := ui.do("POST", "/environments", url.Values{"name": {"ship-9"}, "mode": {"async"}, "tag": {"999"}}); status != http.StatusBadRequest {
		t.Fatalf("unknown tag: %d", status)
	}
	if envs, _ := s.store.Environments(); len(envs) != 0 {
		t.Fatalf("a refused form stored %d environments", len(envs))
	}
	status, body := ui.do("POST", "/environments", url.Values{"name": {"ship-9"}, "mode": {"async"}, "ping": {"30"},
		"tag": {fmt.Sprint(tag.ID)}, "group": {fmt.Sprint(g.ID)}})
	if status != http.StatusCreated {
		t.Fatalf("add: %d %s", status, body)
	}
	e, err := s.store.Environment(1)
	if err != nil || e.Name != "ship-9" || !slices.Equal(e.TagIDs, []uint64{tag.ID}) || e.GroupID != g.ID || e.Frequencies == nil || e.Frequencies.Ping != 30 {
		t.Fatalf("stored %+v %v", e, err)
	}
	i := strings.Index(body, `<code id="edge-key">`)
	if i < 0 {
		t.Fatal("no edge key on the page")
	}
	key := body[i+len(`<code id="edge-key">`):]
	key = key[:strings.Index(key, "<")]
	dev := keyDevice(t, hs.Config.Handler, key, "ship-9-gw")
	if status, _, perr := dev.sync(dev.firstContact()); status != http.StatusOK {
		t.Fatalf("the device with the page's key: %d %+v", status, perr)
	}
	// A Kubernetes environment: the page gives the manifest with its own
	// key, not a docker run line; an unknown platform is refused.
	status, body = ui.do("POST", "/environments", url.Values{"name": {"cluster-3"}, "mode": {"async"}, "platform": {"kubernetes"}})
	if status != http.StatusCreated || !strings.Contains(body, `id="kube-manifest"`) || strings.Contains(body, `id="docker-run"`) ||
		!strings.Contains(body, "kubectl apply -f outpost-agent.yaml") || !strings.Contains(body, "name: cluster-admin") {
		t.Fatalf("add a Kubernetes environment: %d %s", status, body)
	}
	if status, body := ui.do("POST", "/environments", url.Values{"name": {"x"}, "platform": {"nomad"}}); status != http.StatusBadRequest || !strings.Contains(body, "want docker or kubernetes") {
		t.Fatalf("platform nomad: %d", status)
	}
	if _, body := ui.do("GET", "/environments/1/contact", nil); !strings.Contains(body, `"status":"online"`) {
		t.Fatalf("contact after the first call: %s", body)
	}

	if status, _ := ui.do("POST", "/environments/1/edit", url.Values{"name": {"ship-9b"}, "ping": {""}, "snapshot": {"600"}}); status != http.StatusSeeOther {
		t.Fatalf("edit: %d", status)
	}
	if e, _ = s.store.Environment(1); e.Name != "ship-9b" || e.Frequencies.Ping != 0 || e.Frequencies.Snapshot != 600 || len(e.TagIDs) != 0 || e.GroupID != 0 {
		t.Fatalf("after the edit: %+v %+v", e, e.Frequencies)
	}
	if _, body := ui.do("GET", "/environments/1/delete", nil); !strings.Contains(body, "ship-9-gw") {
		t.Fatal("the confirmation does not name the bound device")
	}
	if status, _ := ui.do("POST", "/environments/1/delete", url.Values{"confirm": {"ship-9b"}}); status != http.StatusSeeOther {
		t.Fatalf("delete: %d", status)
	}
	if _, err := s.store.Environment(1); err == nil {
		t.Fatal("still stored after the delete")
	}
	if status, _, _ := dev.sync(dev.ping()); status == http.StatusOK {
		t.Fatal("the deleted environment's device is still served")
	}
}

// hiddenField is the value of the hidden input name on an HTML page.
func hiddenField(t *testing.T, page, name string) string {
	t.Helper()
	m := regexp.MustCompile(`<input type="hidden" name="` + regexp.QuoteMeta(name) + `" value="([^"]*)">`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the page has no hidden field %s", name)
	}
	return m[1]
}
