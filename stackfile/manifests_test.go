package stackfile

import (
	"slices"
	"strings"
	"testing"
)

const goodManifests = `apiVersion: v1
kind: ConfigMap
metadata:
  name: pos-config
data:
  currency: EUR
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: pos
  namespace: shop
spec:
  replicas: 2
---
`

// TestCheckManifestsAcceptsObjects: documents with apiVersion, kind and a
// name pass, an empty trailing document included.
func TestCheckManifestsAcceptsObjects(t *testing.T) {
	if p := CheckManifests(goodManifests, "shop"); p != nil {
		t.Fatalf("problems in good manifests: %v", p)
	}
}

// TestCheckManifestsReportsEveryProblem: every object's problems come at
// once, each with its document and line.
func TestCheckManifestsReportsEveryProblem(t *testing.T) {
	bad := `apiVersion: v1
kind: Service
metadata:
  namespace: shop
---
kind: Deployment
metadata:
  name: POS_Main
---
apiVersion: v1
metadata:
  generateName: job-
---
- just
- a list
---
apiVersion: v1
kind: Secret
metadata:
  name: ok
  namespace: Not_A_Namespace
`
	got := CheckManifests(bad, "Bad Namespace")
	var texts []string
	for _, p := range got {
		texts = append(texts, p.String())
	}
	for _, want := range []string{
		`namespace "Bad Namespace": lower-case`,
		"line 4: document 1 (Service): metadata.name is missing",
		"line 6: document 2 (Deployment): apiVersion is missing",
		`line 8: document 2 (Deployment): name "POS_Main"`,
		"line 10: document 3: kind is missing",
		"line 12: document 3: generateName makes a new object at every deploy",
		"line 14: document 4: an object is a mapping (apiVersion, kind, metadata...), not a list",
		`line 21: document 5 (Secret): namespace "Not_A_Namespace"`,
	} {
		if !slices.ContainsFunc(texts, func(s string) bool { return strings.Contains(s, want) }) {
			t.Errorf("no problem %q in\n%s", want, strings.Join(texts, "\n"))
		}
	}
	if len(got) != 8 {
		t.Errorf("%d problems, want 8:\n%s", len(got), strings.Join(texts, "\n"))
	}
}

// TestCheckManifestsSyntaxAndEmpty: a YAML error stops with its line; no
// object at all is refused.
func TestCheckManifestsSyntaxAndEmpty(t *testing.T) {
	p := CheckManifests(goodManifests+"apiVersion: v1\nkind: [unclosed\n", "")
	if len(p) != 1 || p[0].Line == 0 || !strings.Contains(p[0].Message, "document 3") {
		t.Fatalf("syntax error: %v", p)
	}
	if p := CheckManifests("---\n---\n", ""); len(p) != 1 || !strings.Contains(p[0].Message, "no Kubernetes object") {
		t.Fatalf("no object: %v", p)
	}
}
