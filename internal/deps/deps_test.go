// Package deps holds the test that enforces the package dependency rules of
// docs/architecture.md.
package deps

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "outpost"

// rules: a package (and everything it imports, transitively) may not reach
// the forbidden packages. allowedOnly, when set, lists the only project
// packages a package may import at all.
var rules = []struct {
	pkg         string
	forbidden   []string
	allowedOnly []string
}{
	{pkg: "protocol", allowedOnly: []string{}},
	{pkg: "snapshot", allowedOnly: []string{"protocol"}},
	// The long-lived agent never links Compose: it runs in the compose
	// helper (cmd/outpost-compose); linked, it cost an idle agent about
	// 18 MiB of resident memory.
	{pkg: "edgeagent", forbidden: []string{"server", "server/store", "web", "waitingroom", "edgeagent/stacks/compose"}},
	{pkg: "cmd/outpost-agent", forbidden: []string{"server", "server/store", "web", "waitingroom", "edgeagent/stacks/compose"}},
	{pkg: "web", forbidden: []string{"server", "server/store"}},
	{pkg: "scheduler", forbidden: []string{"server", "server/store", "edgeagent", "web"}},
	{pkg: "tunnel", allowedOnly: []string{}},
	{pkg: "throttle", allowedOnly: []string{}},
	{pkg: "usage", allowedOnly: []string{}},
	{pkg: "kube", allowedOnly: []string{"snapshot", "protocol", "internal/atomicfile"}},
	{pkg: "waitingroom", allowedOnly: []string{"server/store", "protocol", "throttle", "usage", "internal/atomicfile"}},
	{pkg: "internal/dockerhost", allowedOnly: []string{}},
	{pkg: "stackfile", allowedOnly: []string{}},
	{pkg: "edgeagent/stacks", forbidden: []string{"server", "server/store", "web", "waitingroom", "edgeagent/stacks/compose"}},
	{pkg: "edgeagent/stacks/compose", forbidden: []string{"server", "server/store", "web", "waitingroom"}},
	{pkg: "edgeagent/jobs", forbidden: []string{"server", "server/store", "web", "waitingroom"}},
	{pkg: "edgeagent/agentapi", forbidden: []string{"server", "server/store", "web", "waitingroom"}},
	{pkg: "edgeagent/ident", allowedOnly: []string{"protocol"}},
	{pkg: "edgeagent/link", allowedOnly: []string{"protocol"}},
	// The fleet simulator is a device fleet: it reaches the server over
	// HTTP only, never through its packages.
	{pkg: "sim", forbidden: []string{"server", "server/store", "web", "waitingroom", "edgeagent"}},
	{pkg: "cmd/outpost-sim", forbidden: []string{"server", "server/store", "web", "waitingroom", "edgeagent"}},
}

// deps returns the project packages pkg imports, transitively.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-tags", "integration", "-deps", "-f", "{{.ImportPath}}", module+"/"+pkg).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "cannot find package") || strings.Contains(string(out), "is not in std") || strings.Contains(string(out), "no Go files") {
			return nil // the package does not exist yet: nothing to check
		}
		t.Fatalf("go list %s: %v\n%s", pkg, err, out)
	}
	var ds []string
	for _, l := range strings.Fields(string(out)) {
		if rel, ok := strings.CutPrefix(l, module+"/"); ok && rel != pkg {
			ds = append(ds, rel)
		}
	}
	return ds
}

func TestDependencyRules(t *testing.T) {
	for _, r := range rules {
		t.Run(r.pkg, func(t *testing.T) {
			ds := deps(t, r.pkg)
			for _, d := range ds {
				for _, f := range r.forbidden {
					if d == f {
						t.Errorf("%s imports %s (directly or through another package); the design forbids it", r.pkg, d)
					}
				}
				if r.allowedOnly != nil && !contains(r.allowedOnly, d) {
					t.Errorf("%s imports %s; it may import only %v of this project", r.pkg, d, r.allowedOnly)
				}
			}
		})
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestRulesCatchViolations makes sure the check itself can fail: the server
// imports the store, which a rule in the same form would forbid.
func TestRulesCatchViolations(t *testing.T) {
	if !contains(deps(t, "server"), "server/store") {
		t.Fatal("go list did not report server -> server/store; the dependency check is blind")
	}
}

// heavyForAgent are modules the long-lived agent must not link: their
// package initialization runs in every process that links them, used or
// not. Compose and the Docker CLI (with OpenTelemetry's SDK, gRPC and
// BuildKit's protobuf registries behind them) cost an idle agent about 18
// MiB of resident memory that way; they run in the compose helper instead.
var heavyForAgent = []string{
	"github.com/docker/compose/",
	"github.com/docker/cli/",
	"github.com/compose-spec/",
	"github.com/moby/buildkit/",
	"google.golang.org/grpc",
}

// TestAgentLinksNoCompose: outpost-agent's dependencies, all of them (not
// only this module's), hold none of heavyForAgent; the helper's do, which
// shows the check can see them.
func TestAgentLinksNoCompose(t *testing.T) {
	list := func(pkg string) []string {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", module+"/"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		return strings.Fields(string(out))
	}
	heavy := func(ds []string) []string {
		var hits []string
		for _, d := range ds {
			for _, h := range heavyForAgent {
				if strings.HasPrefix(d, h) {
					hits = append(hits, d)
				}
			}
		}
		return hits
	}
	if hits := heavy(list("cmd/outpost-agent")); len(hits) > 0 {
		t.Errorf("outpost-agent links %d packages of %v, e.g. %v: keep Compose in the compose helper (edgeagent/stacks/compose)", len(hits), heavyForAgent, hits[:min(len(hits), 5)])
	}
	if len(heavy(list("cmd/outpost-compose"))) == 0 {
		t.Error("go list reports none of the heavy modules under outpost-compose; the check is blind")
	}
}
