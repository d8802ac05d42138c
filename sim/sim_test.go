//go:build integration

package sim_test

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"outpost/internal/testenv"
	"outpost/sim"
)

// TestFleetPreset is the CI preset of the fleet simulator against the real
// server binary: 200 async devices at 2 s and 20 standard devices polling
// every second, 5 commands a second for 30 s, 2 tunnels carrying 4
// requests a second, and an edge stack over a group of 210 devices (every
// async one and 10 standard ones). It asserts correctness only, never
// speed: every device checked in, every queued command and stack command
// acked once and none left pending, every tunnel opened and every request
// through them answered, the stack running on every device of its group,
// no errors, and both report files written and well-formed.
func TestFleetPreset(t *testing.T) {
	srv := startServer(t)
	dir := t.TempDir()
	cfg := sim.Config{
		Server: srv.URL, User: "admin", Password: adminPassword,
		Devices: 200, Freq: 2, Duration: 30 * time.Second, Grace: 20 * time.Second,
		Standard: 20, PollFreq: 1, Tunnels: 2, TunnelRequestsPerSec: 4, StackGroup: 210,
		CommandsPerSec: 5, ChangesPerHour: 60, // a change a minute per container: deltas flow in 30 s
		Testdata:  filepath.Join("..", "testdata", "docker"),
		ServerPID: srv.PID, Metrics: srv.Metrics,
		JSON: filepath.Join(dir, "report.json"), HTML: filepath.Join(dir, "report.html"),
		Progress: logWriter{t}, ProgressEvery: 5 * time.Second,
	}
	before := runtime.NumGoroutine()
	rep, err := sim.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Every device's goroutine and connection is gone with the run.
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		n := runtime.NumGoroutine()
		return n <= before, fmt.Sprintf("%d goroutines after the run, %d before", n, before)
	})

	if len(rep.Errors) != 0 {
		t.Errorf("errors: %v (first of each: %v)", rep.Errors, rep.ErrorSamples)
	}
	if rep.DevicesUp != cfg.Devices+cfg.Standard || rep.StandardUp != cfg.Standard {
		t.Errorf("%d of %d devices had an exchange answered, %d of %d standard ones", rep.DevicesUp, cfg.Devices+cfg.Standard, rep.StandardUp, cfg.Standard)
	}
	for _, k := range []string{"first", "ping", "snapshot", "commands", "poll", "stack", "tunnel"} {
		if rep.Latency[k].Count == 0 {
			t.Errorf("no exchange of kind %s: %v", k, rep.Latency)
		}
	}
	if rep.EnvironmentsList.Count == 0 {
		t.Errorf("the environments list was never served: %+v", rep.EnvironmentsList)
	}
	c := rep.Commands
	if c.Queued == 0 || c.Acked != c.Queued || c.Unacked != 0 || c.AckedMoreThanOnce != 0 {
		t.Errorf("commands: %+v, want every queued one acked once", c)
	}
	if rep.Server.RSSBytes == 0 || rep.Server.Goroutines == 0 {
		t.Errorf("server figures missing: %+v", rep.Server)
	}
	if tu := rep.Tunnels; tu == nil || tu.Asked != cfg.Tunnels || tu.Opened != cfg.Tunnels || tu.UpAtEnd != cfg.Tunnels || tu.Requests == 0 || tu.Answered != tu.Requests {
		t.Errorf("tunnels: %+v, want %d opened and up, every request answered", tu, cfg.Tunnels)
	}
	st := rep.Stack
	if st == nil || st.Targets != cfg.StackGroup || st.Delivered != st.Targets || st.Running != st.Targets || st.AllRunningMs <= 0 ||
		st.Commands != st.Targets || st.Acked != st.Commands || st.AckedMoreThanOnce != 0 {
		t.Fatalf("stack: %+v, want it delivered to, acked once and running on all %d devices", st, cfg.StackGroup)
	}
	var status struct{ Summary map[string]int }
	srv.do(t, "GET", fmt.Sprintf("/api/edge-stacks/%d/status", st.ID), nil, &status)
	if status.Summary["running"] != cfg.StackGroup || len(status.Summary) != 1 {
		t.Errorf("the server's stack status: %v, want all %d running", status.Summary, cfg.StackGroup)
	}

	// The server's own view: every environment checked in; every command
	// ok, none pending, as many as the simulator queued.
	var page struct {
		Items []struct {
			ID          uint64 `json:"id"`
			LastCheckIn int64  `json:"lastCheckIn"`
		}
		Total int
	}
	srv.do(t, "GET", "/api/environments?limit=1000", nil, &page)
	if page.Total != cfg.Devices+cfg.Standard {
		t.Fatalf("%d environments, want %d", page.Total, cfg.Devices+cfg.Standard)
	}
	results, stackResults := 0, 0
	for _, e := range page.Items {
		if e.LastCheckIn == 0 {
			t.Errorf("environment %d never checked in", e.ID)
		}
		var cmds struct {
			Pending []struct{ ID uint64 }
			Results []struct {
				ID     uint64
				Kind   string
				Status string
			}
		}
		srv.do(t, "GET", envPath(e.ID, "/commands?limit=200"), nil, &cmds)
		if len(cmds.Pending) != 0 {
			t.Errorf("environment %d: commands still pending: %v", e.ID, cmds.Pending)
		}
		for _, r := range cmds.Results {
			if r.Status != "ok" {
				t.Errorf("environment %d: command %d (%s) is %s, want ok", e.ID, r.ID, r.Kind, r.Status)
			}
			switch r.Kind {
			case "container.restart":
				results++
			case "stack.deploy":
				stackResults++
			default:
				t.Errorf("environment %d: command %d of kind %s", e.ID, r.ID, r.Kind)
			}
		}
	}
	if results != c.Queued || stackResults != cfg.StackGroup {
		t.Errorf("the server has %d command results and %d stack deploys, the simulator queued %d, the stack targets %d", results, stackResults, c.Queued, cfg.StackGroup)
	}

	// The report files.
	raw, err := os.ReadFile(cfg.JSON)
	if err != nil {
		t.Fatal(err)
	}
	var back sim.Report
	if err := json.Unmarshal(raw, &back); err != nil || back.Exchanges != rep.Exchanges || len(back.Samples) == 0 {
		t.Errorf("JSON report: %v, %d exchanges, %d samples", err, back.Exchanges, len(back.Samples))
	}
	page2, err := os.ReadFile(cfg.HTML)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(page2), "<svg "); n != 6 {
		t.Errorf("HTML report: %d charts, want 6", n)
	}
	if err := wellFormed(string(page2)); err != nil {
		t.Errorf("HTML report: %v", err)
	}
}

// wellFormed parses an HTML page as XML with HTML's void elements closed:
// every tag opened is closed, in order, and every SVG is XML.
func wellFormed(page string) error {
	d := xml.NewDecoder(strings.NewReader(strings.TrimPrefix(page, "<!doctype html>")))
	// Not strict, so void elements close themselves (AutoClose); end tags
	// that do not match are still errors.
	d.Strict, d.AutoClose, d.Entity = false, []string{"meta", "br", "hr", "img", "input", "link"}, xml.HTMLEntity
	depth := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch tok.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			depth--
		}
	}
	if depth != 0 {
		return errors.New("unclosed elements")
	}
	return nil
}
