package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"outpost/kube"
	"outpost/protocol"
	"outpost/server/store"
)

// kubeEnv stores a trusted async Kubernetes environment.
func kubeEnv(t *testing.T, s *Server, name string) *store.Environment {
	t.Helper()
	e := &store.Environment{Name: name, Mode: store.ModeAsync, Platform: kube.PlatformKubernetes, Trusted: true}
	if err := s.store.CreateEnvironment(e); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestKubernetesAPIByRole walks the Access Restrictions table through
// Outpost's own API: for every row and every role, a request under that
// row is refused by Outpost (403) exactly where the table gives the role
// nothing or only reading; what passes goes on to the tunnel (here 409:
// an async environment has none). The snapshot sections are refused by
// the same rows, and namespace access is the environment administrators'.
func TestKubernetesAPIByRole(t *testing.T) {
	s, hs := testServer(t)
	e := kubeEnv(t, s, "cluster")
	docker := &store.Environment{Name: "engine", Mode: store.ModeAsync, Trusted: true}
	if err := s.store.CreateEnvironment(docker); err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{}
	for _, role := range Roles {
		_, tok := addUser(t, s, strings.ReplaceAll(role, "-", ""), role, "pw-"+role)
		tokens[role] = tok
	}
	// One request per row: the write where the row has one, else the read.
	type req struct{ method, path, ctype string }
	ns := "/api/v1/namespaces/default"
	rows := map[kube.Function]req{
		kube.FnNamespaces:         {"GET", "/api/v1/namespaces", ""},
		kube.FnNamespaceDetails:   {"PATCH", ns, "application/merge-patch+json"},
		kube.FnNamespaceAccess:    {"GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", ""},
		kube.FnApplications:       {"POST", "/apis/apps/v1/namespaces/default/deployments", "application/json"},
		kube.FnApplicationDetails: {"GET", "/apis/apps/v1/namespaces/default/deployments/web", ""},
		kube.FnPodDelete:          {"DELETE", ns + "/pods/web-1", ""},
		kube.FnConsole:            {"POST", ns + "/pods/web-1/exec", ""},
		kube.FnAdvancedDeployment: {"PATCH", "/apis/apps/v1/namespaces/default/deployments/web", "application/apply-patch+yaml"},
		kube.FnConfig:             {"GET", ns + "/secrets", ""},
		kube.FnConfigDetails:      {"PUT", ns + "/configmaps/settings", "application/json"},
		kube.FnVolumes:            {"POST", ns + "/persistentvolumeclaims", "application/json"},
		kube.FnVolumeDetails:      {"GET", ns + "/persistentvolumeclaims/data", ""},
		kube.FnCluster:            {"GET", "/api/v1/componentstatuses", ""},
		kube.FnNodes:              {"GET", "/api/v1/nodes", ""},
		kube.FnClusterSetup:       {"PATCH", "/api/v1/nodes/n1", "application/merge-patch+json"},
		kube.FnErrorDetails:       {"GET", ns + "/events", ""},
		kube.FnStorageClasses:     {"GET", "/apis/storage.k8s.io/v1/storageclasses", ""},
	}
	do := func(role, method, path, ctype string) (int, string) {
		t.Helper()
		r, err := http.NewRequest(method, hs.URL+path, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer "+tokens[role])
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		resp, err := hs.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m struct{ Message string }
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m.Message
	}
	for _, f := range kube.Functions {
		rq, ok := rows[f]
		if !ok {
			t.Fatalf("row %q has no request here", f)
		}
		cr, err := kube.Classify(rq.method, rq.path, rq.ctype)
		if err != nil || cr.Function() != f {
			t.Fatalf("%s %s: classified %q (%v), want %q", rq.method, rq.path, cr.Function(), err, f)
		}
		for _, role := range Roles {
			need := kube.Read
			if cr.Write() {
				need = kube.Write
			}
			allowed := kube.Allowed(kubeRole(role), f) >= need
			status, msg := do(role, rq.method, fmt.Sprintf("/api/environments/%d/kubernetes%s", e.ID, rq.path), rq.ctype)
			want := http.StatusForbidden
			if allowed {
				want = http.StatusConflict // past Outpost's check, no tunnel on an async environment
			}
			if status != want {
				t.Errorf("%s × %s: %s %s: %d %q, want %d", f, role, rq.method, rq.path, status, msg, want)
			}
		}
	}
	// The snapshot sections: refused by their row before the store is read
	// (404 here: no snapshot yet).
	for _, sec := range []string{"namespaces", "workloads", "pods", "configMaps", "claims", "nodes", "cluster", "warnings"} {
		f, _ := kube.SectionFunction(sec)
		for _, role := range Roles {
			want := http.StatusNotFound
			if kube.Allowed(kubeRole(role), f) == kube.None {
				want = http.StatusForbidden
			}
			if status, msg := do(role, "GET", fmt.Sprintf("/api/environments/%d/snapshot?section=%s", e.ID, sec), ""); status != want {
				t.Errorf("section %s as %s: %d %q, want %d", sec, role, status, msg, want)
			}
		}
	}
	// A cluster's deltas span every namespace: only the roles that see them
	// all read them.
	for _, role := range Roles {
		want := http.StatusForbidden
		if role == RoleAdmin || role == RoleEnvAdmin {
			want = http.StatusOK
		}
		if status, msg := do(role, "GET", fmt.Sprintf("/api/environments/%d/snapshot/history?seq=1", e.ID), ""); status != want {
			t.Errorf("a delta of the cluster read by %s: %d %q, want %d", role, status, msg, want)
		}
	}
	// Namespace access: environment administrators only; not on Docker,
	// not system namespaces, not unknown users.
	access := fmt.Sprintf("/api/environments/%d/kubernetes/namespaces/shop/access", e.ID)
	for _, role := range Roles {
		status, _ := call(t, hs, "PUT", access, tokens[role], map[string]any{"userIds": []uint64{1}})
		want := http.StatusForbidden
		if role == RoleAdmin || role == RoleEnvAdmin {
			want = http.StatusOK
		}
		if status != want {
			t.Errorf("namespace access set by %s: %d, want %d", role, status, want)
		}
	}
	for path, want := range map[string]int{
		fmt.Sprintf("/api/environments/%d/kubernetes/namespaces/kube-system/access", e.ID): http.StatusBadRequest,
		fmt.Sprintf("/api/environments/%d/kubernetes/namespaces/Bad_Name/access", e.ID):    http.StatusBadRequest,
		fmt.Sprintf("/api/environments/%d/kubernetes/namespaces/shop/access", docker.ID):   http.StatusConflict,
	} {
		if status, body := call(t, hs, "PUT", path, tokens[RoleAdmin], map[string]any{"userIds": []uint64{1}}); status != want {
			t.Errorf("PUT %s: %d %s, want %d", path, status, body, want)
		}
	}
	if status, body := call(t, hs, "PUT", access, tokens[RoleAdmin], map[string]any{"userIds": []uint64{77}, "teamIds": []uint64{88}}); status != http.StatusBadRequest ||
		!strings.Contains(string(body), "no user with id [77]; no team with id [88]") {
		t.Errorf("unknown user and team: %d %s", status, body)
	}
	status, body := call(t, hs, "GET", fmt.Sprintf("/api/environments/%d/kubernetes/namespaces/access", e.ID), tokens[RoleEnvAdmin], nil)
	if status != http.StatusOK || string(body) != `{"shop":{"userIds":[1],"teamIds":[]}}`+"\n" {
		t.Errorf("namespace access list: %d %s", status, body)
	}
}

// TestKubeAccessReconciled: the grants of the users who worked with a
// cluster go to its agent as one kube.access command, again only when they
// change (a namespace assigned, a user removed), a newer one replacing one
// still pending.
func TestKubeAccessReconciled(t *testing.T) {
	s, hs := testServer(t)
	e := kubeEnv(t, s, "cluster")
	ro, _ := addUser(t, s, "reader", RoleReadOnly, "pw")
	op, _ := addUser(t, s, "op", RoleOperator, "pw")
	for _, u := range []*store.User{ro, op} {
		if _, err := s.store.MarkKubeUser(e.ID, u.ID, 1); err != nil {
			t.Fatal(err)
		}
	}
	pending := func() []store.Command {
		t.Helper()
		if err := s.reconcile(); err != nil {
			t.Fatal(err)
		}
		cs, err := s.store.PendingCommands(e.ID, 100)
		if err != nil {
			t.Fatal(err)
		}
		return slices.DeleteFunc(cs, func(c store.Command) bool { return c.Kind != kindKubeAccess })
	}
	grants := func(c store.Command) []kube.Grant {
		var g []kube.Grant
		if err := json.Unmarshal([]byte(c.Args["grants"]), &g); err != nil {
			t.Fatal(err)
		}
		return g
	}
	cs := pending()
	if len(cs) != 1 || fmt.Sprint(grants(cs[0])) != fmt.Sprintf("[{%d %d %s []} {%d %d %s []}]", e.ID, ro.ID, kube.ReadOnly, e.ID, op.ID, kube.Operator) {
		t.Fatalf("first pass: %+v", cs)
	}
	first := cs[0].ID
	if cs := pending(); len(cs) != 1 || cs[0].ID != first {
		t.Errorf("nothing changed, yet: %+v", cs)
	}
	if err := s.store.PutNamespaceAccess(e.ID, "shop", store.NamespaceAccess{UserIDs: []uint64{ro.ID}}); err != nil {
		t.Fatal(err)
	}
	cs = pending()
	if len(cs) != 1 || cs[0].ID == first || fmt.Sprint(grants(cs[0])[0].Namespaces) != "[shop]" {
		t.Errorf("after an assignment: %+v", cs)
	}
	if _, err := s.store.DeleteUser(op.ID, nil); err != nil {
		t.Fatal(err)
	}
	cs = pending()
	if len(cs) != 1 || len(grants(cs[0])) != 1 || grants(cs[0])[0].User != ro.ID {
		t.Errorf("after the operator's removal: %+v", cs)
	}
	// The command log shows how many users a kube.access carries, not who
	// is assigned what (namespace access is the administrators').
	_, tok := addUser(t, s, "viewer", RoleReadOnly, "pw")
	status, body := call(t, hs, "GET", fmt.Sprintf("/api/environments/%d/commands", e.ID), tok, nil)
	if status != http.StatusOK || strings.Contains(string(body), "shop") || !strings.Contains(string(body), `"grants":"1 users"`) {
		t.Errorf("command log: %d %s", status, body)
	}
	// A kube.access the agent could not apply is sent again, after
	// kubeAccessRetry: an agent that keeps failing is not sent one per
	// exchange.
	now := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { return now }
	if err := s.takeReports(e.ID, []protocol.CommandAck{{ID: cs[0].ID, Status: protocol.StatusFailed, Error: "apiserver away"}}, nil, nil, now); err != nil {
		t.Fatal(err)
	}
	if again := pending(); len(again) != 0 {
		t.Errorf("right after a failed kube.access: %+v", again)
	}
	now = now.Add(kubeAccessRetry)
	again := pending()
	if len(again) != 1 || again[0].ID == cs[0].ID || again[0].Args["grants"] != cs[0].Args["grants"] {
		t.Errorf("a retry period after a failed kube.access: %+v", again)
	}
	// The last user's removal reaches the cluster too: no grants at all.
	if _, err := s.store.DeleteUser(ro.ID, nil); err != nil {
		t.Fatal(err)
	}
	cs = pending()
	if len(cs) != 1 || len(grants(cs[0])) != 0 {
		t.Errorf("after the last user's removal: %+v", cs)
	}
}
