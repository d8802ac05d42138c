package web_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"outpost/kube"
	"outpost/snapshot"
	"outpost/web"
)

// kubeCapture is the real capture of a cluster of 5 edge sites.
func kubeCapture(t *testing.T) *snapshot.Snapshot {
	t.Helper()
	b, err := os.ReadFile("../testdata/kube/kube-5.json")
	if err != nil {
		t.Fatal(err)
	}
	var d snapshot.Snapshot
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	snapshot.Normalize(&d)
	return &d
}

// TestKubernetesEnvironmentPage: a cluster's snapshot shows the cluster's
// facts and its sections as tabs (workloads, pods, namespaces, services,
// ingresses, volumes, config and secrets by key), not Docker's.
func TestKubernetesEnvironmentPage(t *testing.T) {
	s := newSite(t)
	d := kubeCapture(t)
	s.b.snaps[envShop].Docker = d
	_, body := s.get("/environments/1")
	mustContain(t, body, "Kubernetes", "v1.36.3", "25 workloads", "25 pods: 25 pending", "9 namespaces",
		`?tab=pods"`, `?tab=ingresses"`, `?tab=config"`, "site-01/pos", "Deployment", "0/3 ready", "registry.local/pos:1.4")
	if strings.Contains(body, `?tab=containers"`) || strings.Contains(body, "compose projects") {
		t.Error("a cluster's page shows Docker's tabs")
	}
	for tab, want := range map[string][]string{
		"pods":       {"site-02/db-0", "StatefulSet/db", "Pending"},
		"namespaces": {"site-05", "site=site-05", "kube-system"},
		"services":   {"site-03/pos", "80→8080", "app=pos"},
		"ingresses":  {"site-04/pos", "site-04.shop.example/ → pos:80"},
		"claims":     {"site-01/db-data", "2Gi", "ReadWriteOnce"},
		"config":     {"site-01/pos-db", "secret Opaque", "password, user", "currency, store.yaml", "values are never collected"},
		"nodes":      {"No nodes"},
		"warnings":   {"No warning event"},
	} {
		status, body := s.get("/environments/1?tab=" + tab)
		if status != http.StatusOK {
			t.Fatalf("tab %s: %d", tab, status)
		}
		mustContain(t, body, want...)
	}
}

// TestKubernetesDiff: the diff between two points of a cluster names the
// workload that scaled, the pod that went, the namespace that came.
func TestKubernetesDiff(t *testing.T) {
	s := newSite(t)
	old := kubeCapture(t)
	cur := kubeCapture(t)
	for i := range cur.Workloads {
		if w := &cur.Workloads[i]; w.Namespace == "site-01" && w.Name == "pos" {
			w.Desired, w.Ready = 5, 2
		}
	}
	removed := cur.Pods[0]
	cur.Pods = cur.Pods[1:]
	cur.Namespaces = append(cur.Namespaces, snapshot.Namespace{UID: "new-ns", Name: "site-06", Phase: "Active"})
	snapshot.Normalize(cur)
	now := time.Now()
	s.b.snaps[envShop] = &web.Snapshot{Seq: 42, Updated: now, Kind: "delta", Docker: cur}
	s.b.past = map[uint64]map[uint64]*web.Snapshot{envShop: {
		41: {Seq: 41, Updated: now.Add(-time.Minute), Kind: "full", Docker: old},
		42: s.b.snaps[envShop],
	}}
	status, body := s.get("/environments/1/diff?from=41&to=42")
	if status != http.StatusOK {
		t.Fatalf("diff: %d %s", status, body)
	}
	mustContain(t, body, "1 added", "1 removed", "1 changed", "deployment site-01/pos", "0/3 ready", "2/5 ready",
		removed.Namespace+"/"+removed.Name, "site-06")
}

// TestWarningsTabLatestFirst: snapshots keep warnings by ID; the tab lists
// them latest first.
func TestWarningsTabLatestFirst(t *testing.T) {
	s := newSite(t)
	d := kubeCapture(t)
	d.Warnings = []snapshot.Warning{
		{ID: "site-02/Pod/zz/BackOff", Object: "Pod/zz", Reason: "BackOff", Message: "NEWEST", Count: 1, Last: 2_000_000_000},
		{ID: "site-01/Pod/aa/BackOff", Object: "Pod/aa", Reason: "BackOff", Message: "OLDEST", Count: 1, Last: 1_000_000_000},
	}
	snapshot.Normalize(d)
	s.b.snaps[envShop].Docker = d
	_, body := s.get("/environments/1?tab=warnings")
	newest, oldest := strings.Index(body, "NEWEST"), strings.Index(body, "OLDEST")
	if newest < 0 || oldest < 0 || newest > oldest {
		t.Errorf("the Warnings tab does not list the newest first (newest at %d, oldest at %d)", newest, oldest)
	}
}

// TestKubernetesPageByRole: the cluster page shows each role what the
// Access Restrictions table gives it: a read-only user with one assigned
// namespace sees that namespace's and default's objects only, no nodes,
// config or warnings it may not read, and no access tab; an environment
// administrator sees every namespace and the access tab.
func TestKubernetesPageByRole(t *testing.T) {
	s := newSite(t)
	s.b.snaps[envShop].Docker = kubeCapture(t)
	s.b.kubeRole, s.b.kubeNS = kube.ReadOnly, []string{"site-02"}
	_, body := s.get("/environments/1?tab=pods")
	mustContain(t, body, "site-02/db-0")
	for _, hidden := range []string{"site-01/", "site-03/", "kube-system", `?tab=nodes"`, `?tab=warnings"`, `?tab=access"`} {
		if strings.Contains(body, hidden) {
			t.Errorf("a read-only user of site-02 sees %q", hidden)
		}
	}
	_, body = s.get("/environments/1?tab=namespaces")
	if strings.Contains(body, "site-05") || !strings.Contains(body, "site-02") {
		t.Error("the namespaces tab of a read-only user lists namespaces outside its scope, or not its own")
	}
	// A tab the role may not see falls back to the first one.
	_, body = s.get("/environments/1?tab=nodes")
	if strings.Contains(body, `id="nodes"`) {
		t.Error("a read-only user opened the nodes tab")
	}
	if status, _ := s.post("/environments/1/namespaces/site-02/access", "user=1"); status != http.StatusForbidden {
		t.Errorf("a read-only user's assignment: %d, want 403", status)
	}

	s.b.kubeRole, s.b.kubeNS = "", nil
	// A device names a namespace that is none: it gets no form of its own.
	s.b.snaps[envShop].Docker.Namespaces = append(s.b.snaps[envShop].Docker.Namespaces, snapshot.Namespace{UID: "x", Name: "../../waiting-room/action"})
	s.b.nsAccess = web.NamespaceAccess{Assigned: map[string]web.Assignees{"site-02": {Users: []uint64{7}}},
		Users: []web.Option{{ID: 7, Name: "till-reader"}, {ID: 8, Name: "<b>eve</b>"}}, Teams: []web.Option{{ID: 3, Name: "tills"}}}
	_, body = s.get("/environments/1?tab=pods")
	mustContain(t, body, "site-01/", "site-03/", `?tab=access"`, `?tab=nodes"`)
	_, body = s.get("/environments/1?tab=access")
	if strings.Contains(body, "waiting-room/action") {
		t.Error("a namespace name that is none became a form's URL")
	}
	mustContain(t, body, `id="ns-site-02"`, "till-reader", "&lt;b&gt;eve&lt;/b&gt;", "team tills", `action="/environments/1/namespaces/site-05/access"`,
		"kube-system <span class=\"muted\">system</span>")
	status, _ := s.post("/environments/1/namespaces/site-05/access", "user=7&user=8&team=3")
	if status != http.StatusSeeOther || len(s.b.nsSet) != 1 || fmt.Sprint(s.b.nsSet[0]) != "{site-05 [7 8] [3]}" {
		t.Errorf("assignment: %d, saved %+v", status, s.b.nsSet)
	}
	if status, body := s.post("/environments/1/namespaces/site-05/access", "user=99"); status != http.StatusBadRequest || !strings.Contains(body, "no user with id [99]") {
		t.Errorf("assignment of an unknown user: %d %s", status, body)
	}
}
