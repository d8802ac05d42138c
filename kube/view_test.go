package kube

import (
	"encoding/json"
	"os"
	"testing"

	"outpost/snapshot"
)

// TestViewByRole: a snapshot cut for each role keeps only the namespaces
// of its scope and the sections its row allows, and leaves the original
// as it was (it may be a cached one).
func TestViewByRole(t *testing.T) {
	raw, err := os.ReadFile("../testdata/kube/kube-5.json")
	if err != nil {
		t.Fatal(err)
	}
	var d snapshot.Snapshot
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	pods, namespaces := len(d.Pods), len(d.Namespaces)
	d.Nodes = []snapshot.Node{{UID: "n1", Name: "node-1"}}
	d.Warnings = []snapshot.Warning{{ID: "kube-system/Pod/dns/BackOff"}, {ID: "site-02/Pod/db-0/Failed"}, {ID: "/Node/node-1/NotReady"}}
	seen := func(v snapshot.Snapshot) map[string]bool {
		m := map[string]bool{}
		for _, p := range v.Pods {
			m[p.Namespace] = true
		}
		for _, n := range v.Namespaces {
			m[n.Name] = true
		}
		return m
	}
	ro := View(d, ReadOnly, []string{"site-02"})
	for ns := range seen(ro) {
		if ns != "site-02" && ns != "default" {
			t.Errorf("read-only of site-02 sees namespace %s", ns)
		}
	}
	if !seen(ro)["site-02"] || len(ro.Nodes) != 0 || len(ro.Warnings) != 0 || ro.Cluster != (snapshot.Cluster{}) {
		t.Errorf("read-only: site-02 %v, nodes %d, warnings %d, cluster %+v", seen(ro)["site-02"], len(ro.Nodes), len(ro.Warnings), ro.Cluster)
	}
	hd := View(d, Helpdesk, nil)
	if seen(hd)["kube-system"] || !seen(hd)["site-05"] || len(hd.Nodes) != 1 || len(hd.Warnings) != 2 {
		t.Errorf("helpdesk: namespaces %v, nodes %d, warnings %+v", seen(hd), len(hd.Nodes), hd.Warnings)
	}
	ea := View(d, EnvAdmin, nil)
	if len(ea.Pods) != pods || len(ea.Namespaces) != namespaces || len(ea.Warnings) != 3 {
		t.Errorf("environment administrator: %d pods of %d, %d namespaces of %d", len(ea.Pods), pods, len(ea.Namespaces), namespaces)
	}
	if len(d.Pods) != pods || len(d.Namespaces) != namespaces || len(d.Warnings) != 3 {
		t.Error("View changed the snapshot it was given")
	}
}
