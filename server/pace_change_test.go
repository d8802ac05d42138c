package server

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"outpost/protocol"
)

// An operator lengthens a standard device's interval (PATCH its
// frequencies, or its mode to async). The calls already counted in the
// current window were on time under the old interval: the device's next
// call, the one that brings it the change, must not be slowed down. Before,
// the guard judged them against the new interval and logged a flood.
func TestGuardKeepsItsLimitWhenTheIntervalGrows(t *testing.T) {
	for _, tc := range []struct {
		name  string
		own   *protocol.Frequencies // the environment's own frequencies
		patch map[string]any
	}{
		{"frequencies", &protocol.Frequencies{Ping: 2, Command: 2}, map[string]any{"frequencies": map[string]any{"ping": 60, "command": 60}}},
		{"mode async", nil, map[string]any{"mode": "async"}}, // pollInterval 2 below
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, hs := testServer(t)
			_, admin := addUser(t, s, "admin", RoleAdmin, "correct horse battery")
			set := s.edgeSettings()
			set.PollInterval = 2 // an accepted setting (1 to 3600)
			if err := s.putEdgeSettings(set); err != nil {
				t.Fatal(err)
			}
			now := time.Unix(1_800_000_000, 0)
			s.now = func() time.Time { return now }
			env := stage(t, s, tc.own)
			path := fmt.Sprintf("/api/environments/%d", env)
			if st, b := call(t, hs, "PATCH", path, admin, map[string]any{"mode": "standard"}); st != http.StatusOK {
				t.Fatalf("PATCH mode standard: %d %s", st, b)
			}
			d := newDevice(t, hs.Config.Handler, env, "edge-2s")
			d.path = "/edge/v1/poll"
			if st, ans, perr := d.sync(d.firstContact()); st != http.StatusOK || ans.Freq.Ping != 2 {
				t.Fatalf("first contact: %d %+v %v", st, ans, perr)
			}
			// 48 s of polls every 2 s, as told: 25 calls, Limit(2 s) = 300.
			for i := range 24 {
				now = now.Add(2 * time.Second)
				if st, _, perr := d.sync(d.ping()); st != http.StatusOK {
					t.Fatalf("poll %d: %d %v", i, st, perr)
				}
			}
			if st, b := call(t, hs, "PATCH", path, admin, tc.patch); st != http.StatusOK {
				t.Fatalf("PATCH %v: %d %s", tc.patch, st, b)
			}
			// Its next poll, on time: it should be told the new frequency.
			now = now.Add(2 * time.Second)
			if st, _, perr := d.sync(d.ping()); st != http.StatusOK {
				t.Fatalf("first call after the operator lengthened the interval: %d %v; slow_downs{poll}=%d; want 200 carrying the change",
					st, perr, slowDowns(t, s, "poll"))
			}
		})
	}
}
