package kube

import (
	"bufio"
	"net/http"
	"os"
	"strings"
	"testing"
)

// seedRestrictions reads the Access Restrictions table as the source
// document writes it (testdata/kube/access-tables.txt): row name -> cells.
func seedRestrictions(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("../testdata/kube/access-tables.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string][]string{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Portainer Access Restrictions"):
			in = true
		case !in || strings.HasPrefix(line, "Function |") || strings.HasPrefix(line, "---"):
		default:
			cols := strings.Split(line, "|")
			var cells []string
			for _, c := range cols[1:] {
				cells = append(cells, strings.TrimSpace(c))
			}
			for len(cells) < 5 {
				cells = append(cells, "")
			}
			rows[strings.TrimSpace(cols[0])] = cells[:5]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 18 {
		t.Fatalf("the table has %d rows, want 18", len(rows))
	}
	return rows
}

// TestRestrictionsAsTheTableSays: the code's table is the document's, cell
// by cell, and names every row.
func TestRestrictionsAsTheTableSays(t *testing.T) {
	rows := seedRestrictions(t)
	levels := map[string]Level{"": None, "R": Read, "RW": Write, "Yes": Write}
	for name, cells := range rows {
		if name == "Namespace Scope" {
			want := map[string]Scope{"All": ScopeAll, "All, EXCEPT System": ScopeNonSystem, "Default + Assigned": ScopeAssigned}
			for i, role := range EnvRoles {
				if RoleScope(role) != want[cells[i]] {
					t.Errorf("Namespace Scope of %s: got %d, the table says %q", role, RoleScope(role), cells[i])
				}
			}
			continue
		}
		if _, ok := restrictions[Function(name)]; !ok {
			t.Errorf("row %q of the table is not in the code", name)
			continue
		}
		for i, role := range EnvRoles {
			if got, want := Allowed(role, Function(name)), levels[cells[i]]; got != want {
				t.Errorf("%s × %s: code says %v, the table %q", name, role, got, cells[i])
			}
		}
	}
	for _, f := range Functions {
		if _, ok := rows[string(f)]; !ok {
			t.Errorf("the code's row %q is not in the table", f)
		}
	}
}

// TestEveryRowIsEnforced walks every row of the table: for each, requests
// that fall under it (a read and, where the row has a write, a write) are
// allowed or refused for each role exactly as its cell says.
func TestEveryRowIsEnforced(t *testing.T) {
	rows := seedRestrictions(t)
	type call struct{ method, path, ctype string }
	get := func(p string) call { return call{http.MethodGet, p, ""} }
	byRow := map[Function]struct{ read, write []call }{
		FnNamespaces:         {[]call{get("/api/v1/namespaces")}, []call{{http.MethodPost, "/api/v1/namespaces", ""}}},
		FnNamespaceDetails:   {[]call{get("/api/v1/namespaces/default")}, []call{{http.MethodPatch, "/api/v1/namespaces/default", ""}, {http.MethodDelete, "/api/v1/namespaces/default", ""}}},
		FnNamespaceAccess:    {[]call{get("/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings")}, []call{{http.MethodPost, "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", ""}}},
		FnApplications:       {[]call{get("/apis/apps/v1/namespaces/default/deployments"), get("/api/v1/namespaces/default/pods")}, []call{{http.MethodPost, "/apis/apps/v1/namespaces/default/deployments", ""}}},
		FnApplicationDetails: {[]call{get("/apis/apps/v1/namespaces/default/deployments/web"), get("/api/v1/namespaces/default/pods/web-1/log")}, []call{{http.MethodPatch, "/apis/apps/v1/namespaces/default/deployments/web", ""}}},
		FnPodDelete:          {nil, []call{{http.MethodDelete, "/api/v1/namespaces/default/pods/web-1", ""}}},
		FnConsole:            {nil, []call{get("/api/v1/namespaces/default/pods/web-1/exec"), {http.MethodPost, "/api/v1/namespaces/default/pods/web-1/attach", ""}}},
		FnAdvancedDeployment: {nil, []call{{http.MethodPatch, "/apis/apps/v1/namespaces/default/deployments/web", "application/apply-patch+yaml"}}},
		FnConfig:             {[]call{get("/api/v1/namespaces/default/configmaps"), get("/api/v1/namespaces/default/secrets")}, []call{{http.MethodPost, "/api/v1/namespaces/default/secrets", ""}}},
		FnConfigDetails:      {[]call{get("/api/v1/namespaces/default/configmaps/settings")}, []call{{http.MethodPut, "/api/v1/namespaces/default/configmaps/settings", ""}}},
		FnVolumes:            {[]call{get("/api/v1/namespaces/default/persistentvolumeclaims")}, []call{{http.MethodPost, "/api/v1/namespaces/default/persistentvolumeclaims", ""}}},
		FnVolumeDetails:      {[]call{get("/api/v1/namespaces/default/persistentvolumeclaims/data")}, []call{{http.MethodDelete, "/api/v1/namespaces/default/persistentvolumeclaims/data", ""}}},
		FnCluster:            {[]call{get("/api/v1/componentstatuses"), get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")}, nil},
		FnNodes:              {[]call{get("/api/v1/nodes"), get("/api/v1/nodes/node-1")}, nil},
		FnClusterSetup:       {nil, []call{{http.MethodPatch, "/api/v1/nodes/node-1", ""}, {http.MethodPost, "/apis/storage.k8s.io/v1/storageclasses", ""}}},
		FnErrorDetails:       {[]call{get("/api/v1/namespaces/default/events"), get("/apis/events.k8s.io/v1/namespaces/default/events")}, nil},
		FnStorageClasses:     {[]call{get("/apis/storage.k8s.io/v1/storageclasses")}, nil},
	}
	for _, f := range Functions {
		calls, ok := byRow[f]
		if !ok {
			t.Errorf("row %q has no request in this test", f)
			continue
		}
		cells := rows[string(f)]
		for i, role := range EnvRoles {
			cell := cells[i]
			try := func(c call, allowed bool) {
				r, err := Classify(c.method, c.path, c.ctype)
				if err != nil {
					t.Fatalf("%s %s: %v", c.method, c.path, err)
				}
				if r.Function() != f {
					t.Fatalf("%s %s: classified as %q, want %q", c.method, c.path, r.Function(), f)
				}
				err = Check(role, nil, r)
				if allowed && err != nil {
					t.Errorf("%s × %s (%q): %s %s refused: %v", f, role, cell, c.method, c.path, err)
				}
				if !allowed && err == nil {
					t.Errorf("%s × %s (%q): %s %s allowed", f, role, cell, c.method, c.path)
				}
			}
			for _, c := range calls.read {
				try(c, cell != "")
			}
			for _, c := range calls.write {
				try(c, cell == "RW" || cell == "Yes")
			}
		}
	}
}

// TestNamespaceScopeRow: the table's first row, for each role: default,
// an assigned namespace, another one, a system one, and a list across all.
func TestNamespaceScopeRow(t *testing.T) {
	assigned := []string{"shop"}
	pods := func(ns string) string { return "/api/v1/namespaces/" + ns + "/pods" }
	cases := []struct {
		path string
		want map[string]bool // role -> allowed
	}{
		{pods("default"), map[string]bool{EnvAdmin: true, Operator: true, Helpdesk: true, Standard: true, ReadOnly: true}},
		{pods("shop"), map[string]bool{EnvAdmin: true, Operator: true, Helpdesk: true, Standard: true, ReadOnly: true}},
		{pods("other"), map[string]bool{EnvAdmin: true, Operator: true, Helpdesk: true}},
		{pods("kube-system"), map[string]bool{EnvAdmin: true}},
		{pods("kube-public"), map[string]bool{EnvAdmin: true}},
		{pods(Namespace), map[string]bool{EnvAdmin: true}},
		{"/api/v1/namespaces/kube-system", map[string]bool{EnvAdmin: true}},
		{"/api/v1/pods", map[string]bool{EnvAdmin: true}},
	}
	for _, c := range cases {
		r, err := Classify(http.MethodGet, c.path, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, role := range EnvRoles {
			err := Check(role, assigned, r)
			if c.want[role] != (err == nil) {
				t.Errorf("%s as %s: allowed %v, want %v (%v)", c.path, role, err == nil, c.want[role], err)
			}
		}
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		method, path string
		want         Request
	}{
		{"GET", "/api", Request{Verb: "get"}},
		{"GET", "/apis/apps/v1", Request{Verb: "get"}},
		{"GET", "/api/v1/namespaces/a/pods", Request{Verb: "list", Resource: "pods", Namespace: "a", Namespaced: true}},
		{"GET", "/api/v1/namespaces/a/status", Request{Verb: "get", Resource: "namespaces", Name: "a", Sub: "status", Namespace: "a"}},
		{"DELETE", "/apis/batch/v1/namespaces/a/jobs", Request{Verb: "deletecollection", Group: "batch", Resource: "jobs", Namespace: "a", Namespaced: true}},
		{"GET", "/api/v1/watch/namespaces/a/pods", Request{Verb: "watch", Resource: "pods", Namespace: "a", Namespaced: true}},
		{"GET", "/api/v1/services", Request{Verb: "list", Resource: "services", Namespaced: true}},
		{"PUT", "/api/v1/nodes/n1/status", Request{Verb: "update", Resource: "nodes", Name: "n1", Sub: "status"}},
	}
	for _, c := range cases {
		got, err := Classify(c.method, c.path, "")
		if err != nil || got != c.want {
			t.Errorf("%s %s: got %+v, %v; want %+v", c.method, c.path, got, err, c.want)
		}
	}
	for _, bad := range []string{"/healthz", "/api/v1/namespaces/a/pods/b/c/d", "/api/v1//x", "/logs",
		"/api/v1/namespaces/default/../kube-system/pods", "/api/v1/namespaces/default/pods/../../kube-system/pods", "/apis/../api/v1/pods", "/api/v1/namespaces/./pods"} {
		if _, err := Classify("GET", bad, ""); err == nil {
			t.Errorf("%s: classified, want an error", bad)
		}
	}
	if _, err := Classify("POST", "/apis", ""); err == nil {
		t.Error("POST to discovery: classified, want an error")
	}
	// A server-side apply of what another row guards is that row's, not an
	// advanced deployment; a delete of all pods is a pod delete.
	for _, c := range []struct {
		method, path, ctype string
		want                Function
	}{
		{"PATCH", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/x", "application/apply-patch+yaml", FnNamespaceAccess},
		{"PATCH", "/apis/rbac.authorization.k8s.io/v1/namespaces/a/rolebindings/x", "application/apply-patch+yaml", FnNamespaceAccess},
		{"PATCH", "/api/v1/nodes/n1", "application/apply-patch+yaml", FnClusterSetup},
		{"PATCH", "/api/v1/namespaces/a", "application/apply-patch+yaml", FnNamespaceDetails},
		{"PATCH", "/apis/apps/v1/namespaces/a/deployments/web", "application/apply-patch+yaml", FnAdvancedDeployment},
		{"DELETE", "/api/v1/namespaces/a/pods", "", FnPodDelete},
		{"PUT", "/api/v1/persistentvolumes/pv1", "", FnClusterSetup},
	} {
		r, err := Classify(c.method, c.path, c.ctype)
		if err != nil || r.Function() != c.want {
			t.Errorf("%s %s (%s): %q, %v; want %q", c.method, c.path, c.ctype, r.Function(), err, c.want)
		}
	}
	for _, role := range []string{Operator, Standard} {
		r, _ := Classify("PATCH", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/x", "application/apply-patch+yaml")
		if Check(role, []string{"a"}, r) == nil {
			t.Errorf("%s applies a cluster role binding", role)
		}
		r, _ = Classify("DELETE", "/api/v1/namespaces/a/pods", "")
		if (Check(role, []string{"a"}, r) == nil) != (role == Operator) {
			t.Errorf("%s deletes every pod of a namespace: %v", role, Check(role, []string{"a"}, r))
		}
	}
}
