package main

import (
	"strings"
	"testing"

	"outpost/internal/testenv"
)

func TestPlan(t *testing.T) {
	for _, n := range []int{1, 5, 50, 500} {
		p := newPlan(n)
		if got := len(p.containers); got != n {
			t.Errorf("size %d: %d containers", n, got)
		}
		if got, want := len(p.images), max(3, n/10); got < want-1 || got > want {
			t.Errorf("size %d: %d images, want about %d", n, got, want)
		}
		names := map[string]bool{}
		var states [3]int
		compose := 0
		images := map[string]bool{testenv.BusyboxRef: true}
		for _, im := range p.images {
			for _, tag := range im.tags {
				images[tag] = true
			}
		}
		for _, c := range p.containers {
			if names[c.name] {
				t.Errorf("size %d: name %s twice", n, c.name)
			}
			names[c.name] = true
			states[c.state]++
			if !images[c.image] {
				t.Errorf("size %d: %s uses %s, which is not planned", n, c.name, c.image)
			}
			if p := c.labels["com.docker.compose.project"]; p != "" {
				compose++
				if want := p + "-" + c.labels["com.docker.compose.service"] + "-1"; c.name != want {
					t.Errorf("size %d: compose container %s, want name %s", n, c.name, want)
				}
				if len(c.labels["com.docker.compose.config-hash"]) != 64 || !strings.HasSuffix(c.network, "_default") {
					t.Errorf("size %d: %s: config-hash %q, network %q", n, c.name, c.labels["com.docker.compose.config-hash"], c.network)
				}
			}
			if c.state == exited && c.restart != "no" && (c.restart != "on-failure" || c.exit != exitClean) {
				t.Errorf("size %d: %s exits %d with restart %s: it would restart", n, c.name, c.exit, c.restart)
			}
		}
		if n >= 50 {
			// The mix is drawn at random: check it is near 60/25/15 and 70% compose.
			for st, want := range []float64{0.60, 0.25, 0.15} {
				if got := float64(states[st]) / float64(n); got < want-0.1 || got > want+0.1 {
					t.Errorf("size %d: state %d in %.2f of containers, want about %.2f", n, st, got, want)
				}
			}
			if got := float64(compose) / float64(n); got < 0.6 || got > 0.8 {
				t.Errorf("size %d: %.2f of containers in compose projects, want about 0.7", n, got)
			}
		}
	}
}

func TestPlanDeterministic(t *testing.T) {
	a, b := newPlan(50), newPlan(50)
	for i := range a.containers {
		if a.containers[i].name != b.containers[i].name || a.containers[i].state != b.containers[i].state {
			t.Fatalf("container %d: %s/%d then %s/%d", i, a.containers[i].name, a.containers[i].state, b.containers[i].name, b.containers[i].state)
		}
	}
}

func TestOlderVersion(t *testing.T) {
	for in, want := range map[string]string{
		"registry.local/shop/web:1.4.2": "registry.local/shop/web:1.4.1",
		"redis-edge:7":                  "redis-edge:6",
		"traefik-edge:2.11":             "traefik-edge:2.10",
		"telemetry/collector:0.0":       "",
		"x:latest":                      "",
	} {
		if got := olderVersion(in); got != want {
			t.Errorf("olderVersion(%q) = %q, want %q", in, got, want)
		}
	}
}
