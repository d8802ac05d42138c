package stackfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v4"
)

// dnsLabel is a Kubernetes namespace name (RFC 1123 label).
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// dnsSubdomain is most objects' name (RFC 1123 subdomain).
var dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)

// CheckManifests checks the YAML documents of a Kubernetes edge stack and
// its default namespace (empty: each object names its own, or "default"),
// and returns every problem at once: a document that does not parse (which
// stops the reading, as YAML cannot resync past it), and each object
// without apiVersion, kind or metadata.name, or with a name or namespace
// Kubernetes refuses. Each problem carries the line its document or field
// is on. A stack of no object at all is a problem too.
func CheckManifests(manifests, namespace string) []Problem {
	return CheckManifestsOutside(manifests, namespace, nil)
}

// CheckManifestsOutside is CheckManifests, and also refuses the stack's
// namespace, an object's namespace and a Namespace object's name where
// reserved says the namespace is one no stack may touch (nil: none is).
func CheckManifestsOutside(manifests, namespace string, reserved func(ns string) bool) []Problem {
	var problems []Problem
	if namespace != "" && !dnsLabel.MatchString(namespace) {
		problems = append(problems, Problem{Message: fmt.Sprintf("namespace %q: lower-case letters, digits and '-', at most 63 characters", namespace)})
	}
	if reserved == nil {
		reserved = func(string) bool { return false }
	}
	if reserved(namespace) {
		problems = append(problems, Problem{Message: fmt.Sprintf("namespace %s: a system namespace; a stack may not deploy there", namespace)})
	}
	dec := yaml.NewDecoder(bytes.NewReader([]byte(manifests)))
	objects := 0
	for n := 1; ; n++ {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			problems = append(problems, Problem{Line: yamlLine(err.Error()), Message: fmt.Sprintf("document %d: %s", n, strings.TrimPrefix(err.Error(), "yaml: "))})
			break
		}
		if len(doc.Content) == 0 || (doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null") {
			continue // an empty document, as between two "---"
		}
		root := doc.Content[0]
		if root.Kind != yaml.MappingNode {
			problems = append(problems, Problem{Line: root.Line, Message: fmt.Sprintf("document %d: an object is a mapping (apiVersion, kind, metadata...), not a %s", n, nodeKind(root))})
			continue
		}
		objects++
		problems = append(problems, checkObject(n, root, reserved)...)
	}
	if objects == 0 && len(problems) == 0 {
		problems = append(problems, Problem{Message: "no Kubernetes object: at least one document with apiVersion, kind and metadata"})
	}
	return problems
}

// checkObject checks document n's object.
func checkObject(n int, root *yaml.Node, reserved func(string) bool) []Problem {
	var problems []Problem
	field := func(m *yaml.Node, key string) *yaml.Node {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				return m.Content[i+1]
			}
		}
		return nil
	}
	str := func(v *yaml.Node) string {
		if v == nil || v.Kind != yaml.ScalarNode {
			return ""
		}
		return strings.TrimSpace(v.Value)
	}
	what := fmt.Sprintf("document %d", n)
	kind := str(field(root, "kind"))
	if kind != "" {
		what += " (" + kind + ")"
	}
	if str(field(root, "apiVersion")) == "" {
		problems = append(problems, Problem{Line: root.Line, Message: what + ": apiVersion is missing"})
	}
	if kind == "" {
		problems = append(problems, Problem{Line: root.Line, Message: what + ": kind is missing"})
	}
	meta := field(root, "metadata")
	if meta == nil || meta.Kind != yaml.MappingNode {
		return append(problems, Problem{Line: root.Line, Message: what + ": metadata with a name is missing"})
	}
	name, generate := field(meta, "name"), str(field(meta, "generateName"))
	switch {
	case str(name) == "" && generate != "":
		problems = append(problems, Problem{Line: meta.Line, Message: what + ": generateName makes a new object at every deploy; give it a name, so an update changes it and a removal finds it"})
	case str(name) == "":
		problems = append(problems, Problem{Line: meta.Line, Message: what + ": metadata.name is missing"})
	case !dnsSubdomain.MatchString(str(name)):
		problems = append(problems, Problem{Line: name.Line, Message: fmt.Sprintf("%s: name %q: lower-case letters, digits, '-' and '.', at most 253 characters", what, str(name))})
	}
	ns := field(meta, "namespace")
	if ns != nil && !dnsLabel.MatchString(str(ns)) {
		problems = append(problems, Problem{Line: ns.Line, Message: fmt.Sprintf("%s: namespace %q: lower-case letters, digits and '-', at most 63 characters", what, str(ns))})
	}
	// The agent reads manifests as YAML 1.1, where an unquoted yes, on or
	// 123 is a boolean or a number, not a name.
	for _, v := range []*yaml.Node{name, ns} {
		if v != nil && v.Kind == yaml.ScalarNode && v.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 && yaml11NotString.MatchString(v.Value) {
			problems = append(problems, Problem{Line: v.Line, Message: fmt.Sprintf("%s: %q reads as a boolean or a number, not a name: quote it", what, v.Value)})
		}
	}
	switch {
	case ns != nil && reserved(str(ns)):
		problems = append(problems, Problem{Line: ns.Line, Message: fmt.Sprintf("%s: namespace %s is a system namespace; a stack may not touch it", what, str(ns))})
	case kind == "Namespace" && reserved(str(name)):
		problems = append(problems, Problem{Line: name.Line, Message: fmt.Sprintf("%s: namespace %s is a system namespace; a stack may not declare it", what, str(name))})
	}
	return problems
}

// yaml11NotString matches the plain scalars YAML 1.1 reads as booleans or
// numbers.
var yaml11NotString = regexp.MustCompile(`^(y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF|[-+]?(0|[1-9][0-9_]*)|[-+]?0[0-7_]+|0x[0-9a-fA-F_]+|0b[01_]+|[-+]?([0-9][0-9_]*)?\.[0-9_]*([eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?)$`)

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "single value"
	}
	return "mapping"
}
