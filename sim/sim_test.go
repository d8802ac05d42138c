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

// TestFleetPreset is the CI preset of the fleet simulator: 200 async
// devices at 2 s against the real server binary, 5 commands a second for
// 30 s. It asserts correctness only, never speed: every device checked in,
// every queued command acked once and none left pending, no errors, and
// both report files written and well-formed.
func TestFleetPreset(t *testing.T) {
	srv := startServer(t)
	dir := t.TempDir()
	cfg := sim.Config{
		Server: srv.URL, User: "admin", Password: adminPassword,
		Devices: 200, Freq: 2, Duration: 30 * time.Second, Grace: 20 * time.Second,
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
	if rep.DevicesUp != cfg.Devices {
		t.Errorf("%d of %d devices had an exchange answered", rep.DevicesUp, cfg.Devices)
	}
	for _, k := range []string{"first", "ping", "snapshot", "commands"} {
		if rep.Latency[k].Count == 0 {
			t.Errorf("no exchange of kind %s: %v", k, rep.Latency)
		}
	}
	c := rep.Commands
	if c.Queued == 0 || c.Acked != c.Queued || c.Unacked != 0 || c.AckedMoreThanOnce != 0 {
		t.Errorf("commands: %+v, want every queued one acked once", c)
	}
	if rep.Server.RSSBytes == 0 || rep.Server.Goroutines == 0 {
		t.Errorf("server figures missing: %+v", rep.Server)
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
	if page.Total != cfg.Devices {
		t.Fatalf("%d environments, want %d", page.Total, cfg.Devices)
	}
	results := 0
	for _, e := range page.Items {
		if e.LastCheckIn == 0 {
			t.Errorf("environment %d never checked in", e.ID)
		}
		var cmds struct {
			Pending []struct{ ID uint64 }
			Results []struct {
				ID     uint64
				Status string
			}
		}
		srv.do(t, "GET", envPath(e.ID, "/commands?limit=200"), nil, &cmds)
		if len(cmds.Pending) != 0 {
			t.Errorf("environment %d: commands still pending: %v", e.ID, cmds.Pending)
		}
		for _, r := range cmds.Results {
			if r.Status != "ok" {
				t.Errorf("environment %d: command %d is %s, want ok", e.ID, r.ID, r.Status)
			}
		}
		results += len(cmds.Results)
	}
	if results != c.Queued {
		t.Errorf("the server has %d command results, the simulator queued %d", results, c.Queued)
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
