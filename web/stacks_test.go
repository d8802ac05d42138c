package web_test

import (
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestStacksPage(t *testing.T) {
	s := newSite(t)
	code, body := s.get("/stacks")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	mustContain(t, body,
		`<a href="/stacks" aria-current="page">Edge stacks</a>`,
		`<a class="strong" href="/stacks/1">telemetry</a>`, `<a class="strong" href="/stacks/2">pos</a>`, `<a class="strong" href="/stacks/3">camera-bridge</a>`,
		"8 environments: 3 running, 1 deploying, 1 acknowledged, 1 pending, 1 error, 1 removing",
		"3 environments: 2 running, 1 pending", "0 environments",
		`<td class="num">3</td>`, // telemetry's version and its edge groups
		"25 min ago", "2 d ago", "1 h ago",
		// the legend names every status, in the bar's order
		`<span class="swatch ss-running"></span>running`, `<span class="swatch ss-removing"></span>removing`,
	)
	// Sorted by name; a stack without environments draws no bar.
	if i, j, k := strings.Index(body, ">camera-bridge<"), strings.Index(body, ">pos<"), strings.Index(body, ">telemetry<"); i > j || j > k {
		t.Error("stacks are not sorted by name")
	}
	if n := strings.Count(body, `<svg class="statebar"`); n != 2 {
		t.Errorf("%d bars, want 2: one per stack with environments", n)
	}
}

func TestStacksEmpty(t *testing.T) {
	s := newSite(t)
	s.b.stacks = nil
	code, body := s.get("/stacks")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	mustContain(t, body, "No edge stacks yet", "/api/edge-stacks", "/api/edge-groups")
}

// barRect matches one segment of a split bar.
var barRect = regexp.MustCompile(`<rect class="ss-(\w+)" x="([\d.]+)" y="0" width="([\d.]+)" height="10.00"><title>(\d+) (\w+)</title></rect>`)

// TestStackBarProportional checks that each segment is as wide as its share
// of the environments, segments follow each other without gaps or overlap,
// and they fill the bar.
func TestStackBarProportional(t *testing.T) {
	s := newSite(t)
	for _, tc := range []struct {
		path  string
		order []string
		n     []int
	}{
		{"/stacks/1", []string{"running", "deploying", "acknowledged", "pending", "error", "removing"}, []int{3, 1, 1, 1, 1, 1}},
		{"/stacks/2", []string{"running", "pending"}, []int{2, 1}},
	} {
		_, body := s.get(tc.path)
		segs := barRect.FindAllStringSubmatch(body, -1)
		if len(segs) != len(tc.order) {
			t.Fatalf("%s: %d segments, want %d", tc.path, len(segs), len(tc.order))
		}
		total := 0
		for _, n := range tc.n {
			total += n
		}
		x := 0.0
		for i, m := range segs {
			if m[1] != tc.order[i] || m[5] != tc.order[i] || m[4] != strconv.Itoa(tc.n[i]) {
				t.Errorf("%s: segment %d is %q titled %q %q, want %d %s", tc.path, i, m[1], m[4], m[5], tc.n[i], tc.order[i])
			}
			sx, _ := strconv.ParseFloat(m[2], 64)
			w, _ := strconv.ParseFloat(m[3], 64)
			if want := 1000 * float64(tc.n[i]) / float64(total); math.Abs(w-want) > 0.01 {
				t.Errorf("%s: %s is %.2f wide, want %.2f", tc.path, m[1], w, want)
			}
			if math.Abs(sx-x) > 0.02 {
				t.Errorf("%s: %s starts at %.2f, want %.2f", tc.path, m[1], sx, x)
			}
			x = sx + w
		}
		if math.Abs(x-1000) > 0.02 {
			t.Errorf("%s: the segments end at %.2f, want 1000", tc.path, x)
		}
		// The list draws the same bar.
		_, list := s.get("/stacks")
		for _, m := range segs {
			if !strings.Contains(list, m[0]) {
				t.Errorf("/stacks lacks the segment %s", m[0])
			}
		}
	}
}

func TestStackPage(t *testing.T) {
	s := newSite(t)
	code, body := s.get("/stacks/1")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	mustContain(t, body,
		`<a href="/stacks" aria-current="page">Edge stacks</a>`, `<a href="/stacks">Edge stacks</a> /`,
		"<h1>telemetry</h1>", "version 3", "shops, vessels, wind", "registry.example.com", "25 min ago by admin", "9 d ago",
		"<strong>8 environments: 3 running, 1 deploying, 1 acknowledged, 1 pending, 1 error, 1 removing</strong>",
		`<span class="swatch ss-running"></span>3 running`, `<span class="swatch ss-error"></span>1 error`,
		`<td class="nowrap"><a class="strong" href="/environments/1">shop-042</a>`, `<a class="strong" href="/environments/5">windfarm-07-t12</a>`,
		`<span class="badge ss-deploying">deploying</span>`, `<span class="badge ss-removing">removing</span> <span class="muted small">leaving the stack</span>`,
		"environment 7 (deleted)",
		// the error message, escaped
		`service &#34;grafana&#34;: pull grafana/grafana:10.4.2: &lt;html&gt;503 Service Unavailable&lt;/html&gt;`,
		// an environment to run an older version than the stack's
		`<td class="num warn" title="the stack is at version 3">2</td>`,
		// names are escaped too
		"kiosk-&lt;b&gt;9&lt;/b&gt;",
		// a deploy's progress, as progress
		`<span class="muted small">Deployment shop/web: 1 of 2 replicas available</span>`,
	)
	if strings.Contains(body, "<html>503") || strings.Contains(body, "<b>9</b>") {
		t.Error("the page holds unescaped backend text")
	}
	// Errors first, then by environment name; a deleted one, which has none, last.
	var order []string
	for _, m := range regexp.MustCompile(`<span class="badge ss-(\w+)">`).FindAllStringSubmatch(body, -1) {
		order = append(order, m[1])
	}
	if got, want := strings.Join(order, " "), "error acknowledged deploying running running pending running removing"; got != want {
		t.Errorf("statuses in order %q, want %q", got, want)
	}
	if i, j := strings.Index(body, ">vessel-north-star<"), strings.Index(body, ">kiosk-"); i < 0 || j < 0 || i > j {
		t.Error("the environment in error does not come first")
	}

	_, empty := s.get("/stacks/3")
	mustContain(t, empty, "<strong>0 environments</strong>", "No environment is in this stack's edge groups yet", "cameras")
	if strings.Contains(empty, "<svg class=\"statebar") || strings.Contains(empty, `<table`) {
		t.Error("a stack without environments draws a bar or a table")
	}
}

func TestStackNotFound(t *testing.T) {
	s := newSite(t)
	for _, p := range []string{"/stacks/999", "/stacks/abc", "/stacks/0"} {
		code, body := s.get(p)
		if code != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", p, code)
		}
		mustContain(t, body, "Edge stack not found", `<a href="/stacks">Back to the edge stacks</a>`)
	}
	_, body := s.get("/stacks/999")
	mustContain(t, body, "There is no edge stack 999")
}
