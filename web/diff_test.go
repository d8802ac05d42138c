package web_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"outpost/snapshot"
	"outpost/web"
)

// withPast gives the shop two earlier points: seq 40, before the pos stack
// was updated and the camera bridge was added, and seq 41.
func withPast(s *site) (old *snapshot.Snapshot) {
	now := time.Now()
	cur := s.b.snaps[envShop].Docker
	old = &snapshot.Snapshot{Engine: cur.Engine, Images: cur.Images, Networks: cur.Networks, Projects: cur.Projects}
	for _, c := range cur.Containers {
		switch c.Name {
		case "camera-bridge": // added since
			continue
		case "pos-api-1": // another image and health then
			c.Image, c.ImageID, c.Health = "registry.example.com/pos/api:2.13.1", "5f5f5f5f5f5f", snapshot.HealthHealthy
		case "telemetry-grafana-1": // stopped then
			c.State = snapshot.StateExited
		}
		old.Containers = append(old.Containers, c)
	}
	old.Containers = append(old.Containers, snapshot.Container{ID: "9e9e9e9e9e9e", Name: "legacy-sync", Image: "busybox:1.36", State: snapshot.StateRunning})
	old.Volumes = append(append(old.Volumes, cur.Volumes...), snapshot.Volume{Name: "legacy-data"})
	snapshot.Normalize(old)
	s.b.past = map[uint64]map[uint64]*web.Snapshot{envShop: {
		40: {Seq: 40, Updated: now.Add(-13 * time.Minute), Kind: "delta", Docker: old},
		41: {Seq: 41, Updated: now.Add(-8 * time.Minute), Kind: "delta", Docker: old},
		42: s.b.snaps[envShop],
	}}
	for i := range s.b.hist[envShop] {
		s.b.hist[envShop][i].Viewable = s.b.hist[envShop][i].Seq >= 40
	}
	return old
}

func TestSnapshotAsItWas(t *testing.T) {
	s := newSite(t)
	withPast(s)
	status, body := s.get("/environments/1?tab=containers&at=40")
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	mustContain(t, body, "You are looking at <strong>seq 40</strong>", "The latest is seq 42", "Back to now",
		"/environments/1/diff?from=40&amp;to=42", "legacy-sync", "registry.example.com/pos/api:2.13.1")
	if strings.Contains(body, "camera-bridge") {
		t.Error("seq 40 shows a container added later")
	}
	// Tabs and container links stay on the point.
	mustContain(t, body, "/environments/1?tab=images&amp;at=40", "container=9e9e9e9e9e9e&amp;at=40")
	// The timeline marks what can be rebuilt and what cannot.
	_, body = s.get("/environments/1?tab=history")
	mustContain(t, body, `/environments/1?tab=containers&amp;at=40`, `name="from" value="41"`, "too old to rebuild")
	if strings.Contains(body, `name="from" value="39"`) {
		t.Error("a point the history cannot rebuild is offered for a diff")
	}
	status, body = s.get("/environments/1?at=12")
	if status != http.StatusNotFound || !strings.Contains(body, "no longer holds what it takes to show seq 12") {
		t.Fatalf("a point no longer held: %d", status)
	}
	if status, _ := s.get("/environments/1?at=x"); status != http.StatusBadRequest {
		t.Fatalf("at=x: %d", status)
	}
}

func TestContainerDetail(t *testing.T) {
	s := newSite(t)
	status, body := s.get("/environments/1?tab=containers&container=b1c2d3e4f5a6")
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	mustContain(t, body, `id="container-detail"`, "telemetry-mosquitto-1", "eclipse-mosquitto:2.0.18", "unless-stopped",
		"volume telemetry_mosquitto-data → /mosquitto/data", "telemetry_default", snapshot.LabelProject, "Started")
	_, body = s.get("/environments/1?tab=containers&container=nope")
	mustContain(t, body, "This snapshot has no container “nope”")
}

func TestDiffPage(t *testing.T) {
	s := newSite(t)
	withPast(s)
	status, body := s.get("/environments/1/diff?from=40&to=42")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	mustContain(t, body, "Changes on shop-042", "seq 40", "seq 42",
		"<span class=\"mono\">camera-bridge</span> added", "<span class=\"mono\">legacy-sync</span> removed",
		"pos-api-1</span>: health <del>healthy</del> → <ins>unhealthy</ins>; image <del>registry.example.com/pos/api:2.13.1</del> → <ins>registry.example.com/pos/api:2.14.0</ins>",
		"telemetry-grafana-1</span>: state <del>exited</del> → <ins>running</ins>",
		"<span class=\"mono\">legacy-data</span> removed",
		"1 added", "2 removed", "2 changed")
	// The order of the two points does not matter; the same point twice
	// changes nothing.
	_, swapped := s.get("/environments/1/diff?from=42&to=40")
	mustContain(t, swapped, "legacy-sync</span> removed")
	_, same := s.get("/environments/1/diff?from=41&to=40")
	mustContain(t, same, "Nothing the snapshot records changed")
	for q, want := range map[string]string{
		"from=12&to=42": "no longer holds what it takes to rebuild seq 12",
		"to=42":         "Pick the point to compare from",
		"from=x":        "is not a sequence number",
	} {
		if status, body := s.get("/environments/1/diff?" + q); status != http.StatusBadRequest || !strings.Contains(body, want) {
			t.Errorf("%s: %d, want 400 with %q", q, status, want)
		}
	}
}
