package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"outpost/protocol"
	"outpost/snapshot"
)

// scrape returns the value of one sample line of s's /metrics, served as the
// metrics listener serves it.
func scrape(t *testing.T, s *Server, sample string) float64 {
	t.Helper()
	ms := httptest.NewServer(s.metrics.mux())
	defer ms.Close()
	resp, err := http.Get(ms.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in /metrics", sample)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMetricsCountExchanges(t *testing.T) {
	s, hs := testServer(t)
	env := stage(t, s, &protocol.Frequencies{Ping: 60})
	dev := newDevice(t, hs.Config.Handler, env, "edge-1")
	if status, _, perr := dev.sync(dev.firstContact()); status != 200 {
		t.Fatal(perr)
	}
	full := testSnapshot(2, snapshot.StateRunning)
	if status, _, perr := dev.sync(&protocol.SyncRequest{Version: protocol.Version, EnvID: env, Include: protocol.IncludeSnapshot,
		Snapshot: push(t, 1, 0, full, full)}); status != 200 {
		t.Fatal(perr)
	}
	if status, _, _ := dev.post([]byte{0xff}, ""); status != http.StatusBadRequest {
		t.Fatalf("garbage: %d", status)
	}
	checks := map[string]float64{
		`outpost_edge_exchanges_total{kind="sync",result="ok"}`:      2,
		`outpost_edge_exchanges_total{kind="sync",result="refused"}`: 1,
		`outpost_snapshot_pushes_total{kind="full",result="stored"}`: 1,
		`outpost_devices_online`:                                     1,
	}
	for sample, want := range checks {
		if got := scrape(t, s, sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}
	if n := scrape(t, s, "outpost_store_write_seconds_count"); n < 2 {
		t.Errorf("store writes observed: %v, want at least the binding and the snapshot", n)
	}
	if in, out := scrape(t, s, "outpost_edge_body_bytes_received_total"), scrape(t, s, "outpost_edge_body_bytes_sent_total"); in == 0 || out == 0 {
		t.Errorf("bytes in %v, out %v", in, out)
	}
}

// /metrics needs no login, so it is not on the public port: it is served on
// its own listener (--metrics-addr, loopback by default).
func TestMetricsNotOnThePublicPort(t *testing.T) {
	s, hs := testServer(t)
	resp, err := http.Get(hs.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK && strings.Contains(string(body), "outpost_") {
		t.Fatalf("/metrics answers on the public port without login: %d", resp.StatusCode)
	}
	if v := scrape(t, s, "outpost_waiting_room_devices"); v != 0 {
		t.Fatalf("metrics listener: outpost_waiting_room_devices = %v", v)
	}
}

func TestLoopbackURL(t *testing.T) {
	for u, want := range map[string]bool{
		"https://localhost:9443": true, "https://127.0.0.1:9443": true, "https://[::1]:9443": true, "https://app.localhost": true,
		"https://172.17.0.1:9443": false, "https://outpost.example.com": false,
	} {
		if got := loopbackURL(u); got != want {
			t.Errorf("loopbackURL(%q) = %v, want %v", u, got, want)
		}
	}
}
