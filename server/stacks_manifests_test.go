package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"outpost/protocol"
	"outpost/server/store"
)

const testManifests = `apiVersion: v1
kind: ConfigMap
metadata:
  name: till-config
data:
  currency: EUR
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: till
spec:
  replicas: 1
`

// problemsOf calls the API and returns the 400 answer's problems, failing
// the test on any other status.
func problemsOf(t *testing.T, hs *httptest.Server, method, path, token string, req any) string {
	t.Helper()
	status, body := call(t, hs, method, path, token, req)
	var e apiError
	if status != http.StatusBadRequest || json.Unmarshal(body, &e) != nil {
		t.Fatalf("want 400 with problems, got %d %s", status, body)
	}
	return e.Error
}

// TestKubernetesStackProblemsAllAtOnce: a stack of type kubernetes is
// checked as manifests (each document parses and has apiVersion, kind and
// a valid name, with its line), and every problem of the request comes in
// one answer, nothing stored; on update too.
func TestKubernetesStackProblemsAllAtOnce(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	a := bound(t, s, hs.Config.Handler, "a")
	var g store.EdgeGroup
	apiJSON(t, hs, "POST", "/api/edge-groups", tok, map[string]any{"name": "clusters", "environmentIds": []uint64{a.env}}, &g, http.StatusCreated)

	bad := `apiVersion: v1
kind: ConfigMap
metadata:
  name: Till_Config
---
kind: Deployment
metadata:
  name: till
---
apiVersion: v1
kind: Service
metadata:
  namespace: shop
`
	got := problemsOf(t, hs, "POST", "/api/edge-stacks", tok, map[string]any{
		"name": "till-", "type": "kubernetes", "manifests": bad, "namespace": "Shop",
		"composeFile": testCompose, "env": map[string]string{"A": "b"}, "edgeGroupIds": []uint64{g.ID},
		"registries": []map[string]string{{"url": "registry.example.com", "username": "u", "password": "p"}},
	})
	for _, want := range []string{
		`manifests: line 4: document 1 (ConfigMap): name "Till_Config": lower-case letters, digits, '-' and '.', at most 253 characters`,
		"manifests: line 6: document 2 (Deployment): apiVersion is missing",
		"manifests: line 13: document 3 (Service): metadata.name is missing",
		`namespace "Shop": lower-case letters, digits and '-', at most 63 characters`,
		`name "till-": a kubernetes stack's name labels its objects (outpost.io/stack): end it with a letter or digit`,
		"composeFile: a kubernetes stack has manifests, not a compose file",
		"env: a kubernetes stack has no variables",
		"registries: a kubernetes stack pulls with the imagePullSecrets its manifests name",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("create: the answer lacks %q:\n%s", want, got)
		}
	}
	// A YAML error stops the reading: it comes with its line.
	got = problemsOf(t, hs, "POST", "/api/edge-stacks", tok, map[string]any{
		"name": "till", "type": "kubernetes", "manifests": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [x\n", "edgeGroupIds": []uint64{g.ID},
	})
	if !strings.Contains(got, "manifests: line 4: document 1:") {
		t.Errorf("a YAML error: %s", got)
	}
	for _, req := range []map[string]any{
		{"name": "till", "type": "kubernetes", "edgeGroupIds": []uint64{g.ID}},
		{"name": "till", "type": "helm", "manifests": testManifests, "edgeGroupIds": []uint64{g.ID}},
		{"name": "till", "composeFile": testCompose, "manifests": testManifests, "edgeGroupIds": []uint64{g.ID}},
	} {
		got := problemsOf(t, hs, "POST", "/api/edge-stacks", tok, req)
		if !strings.Contains(got, "manifests: required") && !strings.Contains(got, `type "helm": compose or kubernetes`) &&
			!strings.Contains(got, `a compose stack has a composeFile; for Kubernetes manifests, create a stack of "type": "kubernetes"`) {
			t.Errorf("%v: %s", req, got)
		}
	}
	var list []stackView
	apiJSON(t, hs, "GET", "/api/edge-stacks", tok, nil, &list, http.StatusOK)
	if len(list) != 0 {
		t.Fatalf("refused stacks were stored: %+v", list)
	}

	// A good one: stored with its type, and sent as such.
	var st stackView
	apiJSON(t, hs, "POST", "/api/edge-stacks", tok, map[string]any{
		"name": "till", "type": "kubernetes", "manifests": testManifests, "namespace": "shop", "edgeGroupIds": []uint64{g.ID},
	}, &st, http.StatusCreated)
	if st.Type != "kubernetes" || st.Manifests != testManifests || st.Namespace != "shop" || st.ComposeFile != "" || st.Version != 1 {
		t.Fatalf("created: %+v", st)
	}
	if err := s.reconcile(); err != nil {
		t.Fatal(err)
	}
	ans := a.pull(s, nil, nil, nil)
	if len(ans.Commands) != 1 || ans.Commands[0].Kind != kindStackDeploy || len(ans.Blobs) != 1 {
		t.Fatalf("the device got %+v", ans)
	}
	var sc protocol.StackContent
	if err := protocol.Unmarshal(ans.Blobs[0].Data, &sc); err != nil || sc.Type != protocol.StackKubernetes || string(sc.Manifests) != testManifests || sc.Namespace != "shop" || len(sc.Compose) != 0 {
		t.Fatalf("content sent: %+v %v", sc, err)
	}
	a.pull(s, okAcks(ans.Commands), nil, nil)

	// Updates are checked as they will run, merged with the stack.
	path := fmt.Sprintf("/api/edge-stacks/%d", st.ID)
	got = problemsOf(t, hs, "PUT", path, tok, map[string]any{"manifests": bad})
	for _, want := range []string{"manifests: line 4: document 1 (ConfigMap)", "manifests: line 6: document 2 (Deployment): apiVersion is missing", "manifests: line 13: document 3 (Service)"} {
		if !strings.Contains(got, want) {
			t.Errorf("update: the answer lacks %q:\n%s", want, got)
		}
	}
	got = problemsOf(t, hs, "PUT", path, tok, map[string]any{"namespace": "Not Valid", "type": "compose", "composeFile": testCompose})
	for _, want := range []string{`namespace "Not Valid"`, "type: this stack is of type kubernetes, and a stack's type cannot change", "composeFile: a kubernetes stack has manifests"} {
		if !strings.Contains(got, want) {
			t.Errorf("update: the answer lacks %q:\n%s", want, got)
		}
	}
	dropped := testManifests[:strings.Index(testManifests, "---")]
	apiJSON(t, hs, "PUT", path, tok, map[string]any{"manifests": dropped}, &st, http.StatusOK)
	if st.Version != 2 || st.Manifests != dropped || st.Namespace != "shop" || st.Type != "kubernetes" {
		t.Fatalf("updated: %+v", st)
	}
	apiJSON(t, hs, "GET", path, tok, nil, &st, http.StatusOK)
	if st.Type != "kubernetes" || st.Manifests != dropped {
		t.Fatalf("read back: %+v", st)
	}
}

// TestComposeStackContentUnchangedByTypes: a compose stack's content blob
// is what it was before stacks had types (the hash below was taken then),
// so devices do not see every compose stack as changed; and its view says
// its type.
func TestComposeStackContentUnchangedByTypes(t *testing.T) {
	s, hs := testServer(t)
	_, tok := addUser(t, s, "admin", RoleAdmin, "pw")
	a := bound(t, s, hs.Config.Handler, "a")
	var g store.EdgeGroup
	apiJSON(t, hs, "POST", "/api/edge-groups", tok, map[string]any{"name": "shops", "environmentIds": []uint64{a.env}}, &g, http.StatusCreated)
	for _, typ := range []string{"", "compose"} {
		var st stackView
		apiJSON(t, hs, "POST", "/api/edge-stacks", tok, map[string]any{
			"name": "web" + typ, "type": typ, "composeFile": testCompose, "env": map[string]string{"GREETING": "hi"}, "edgeGroupIds": []uint64{g.ID},
		}, &st, http.StatusCreated)
		if st.Hash != "7c6f4dab5d26aa5e735c314803811ea6255f87a595c64628244e868396cee143" || st.Type != "compose" {
			t.Errorf("type %q: hash %s, type %q", typ, st.Hash, st.Type)
		}
	}
}

// TestKubernetesStacksAreTheAdministrators: the agent applies a stack's
// manifests as cluster-admin, so only environment administrators write
// Kubernetes stacks (operators keep compose stacks); no stack touches a
// system namespace; a name YAML 1.1 reads as a boolean or number is
// refused with the advice to quote it, as the agent would refuse it.
func TestKubernetesStacksAreTheAdministrators(t *testing.T) {
	s, hs := testServer(t)
	_, admin := addUser(t, s, "admin", RoleAdmin, "pw")
	_, envAdmin := addUser(t, s, "envadmin", RoleEnvAdmin, "pw")
	_, op := addUser(t, s, "op", RoleOperator, "pw")
	a := bound(t, s, hs.Config.Handler, "a")
	var g store.EdgeGroup
	apiJSON(t, hs, "POST", "/api/edge-groups", admin, map[string]any{"name": "clusters", "environmentIds": []uint64{a.env}}, &g, http.StatusCreated)
	stack := func(name, ns, manifests string) map[string]any {
		return map[string]any{"name": name, "type": "kubernetes", "namespace": ns, "manifests": manifests, "edgeGroupIds": []uint64{g.ID}}
	}
	if status, body := call(t, hs, "POST", "/api/edge-stacks", op, stack("ops", "shop", testManifests)); status != http.StatusForbidden {
		t.Errorf("an operator creates a kubernetes stack: %d %s", status, body)
	}
	var created struct {
		ID uint64 `json:"id"`
	}
	apiJSON(t, hs, "POST", "/api/edge-stacks", envAdmin, stack("till", "shop", testManifests), &created, http.StatusCreated)
	if status, _ := call(t, hs, "PUT", fmt.Sprintf("/api/edge-stacks/%d", created.ID), op, map[string]any{"namespace": "other"}); status != http.StatusForbidden {
		t.Errorf("an operator updates a kubernetes stack: %d", status)
	}
	if status, _ := call(t, hs, "DELETE", fmt.Sprintf("/api/edge-stacks/%d", created.ID), op, nil); status != http.StatusForbidden {
		t.Errorf("an operator deletes a kubernetes stack: %d", status)
	}
	if status, body := call(t, hs, "POST", "/api/edge-stacks", op, map[string]any{"name": "web", "composeFile": "services:\n  web:\n    image: nginx\n", "edgeGroupIds": []uint64{g.ID}}); status != http.StatusCreated {
		t.Errorf("an operator creates a compose stack: %d %s", status, body)
	}
	got := problemsOf(t, hs, "POST", "/api/edge-stacks", admin, stack("sys", "kube-system",
		"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: outpost\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: kube-public\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: yes\n  namespace: on\n"))
	for _, want := range []string{"namespace kube-system: a system namespace", "line 4: document 1 (Namespace): namespace outpost is a system namespace",
		"line 10: document 2 (ConfigMap): namespace kube-public is a system namespace", `line 15: document 3 (ConfigMap): "yes" reads as a boolean or a number`,
		`line 16: document 3 (ConfigMap): "on" reads as a boolean or a number`} {
		if !strings.Contains(got, want) {
			t.Errorf("problems %q lack %q", got, want)
		}
	}
}
