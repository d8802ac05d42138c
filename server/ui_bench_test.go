package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"outpost/server/store"
)

// benchPage serves GET target of the UI with tok's session cookie, reporting
// ms/op; every answer must be a 200.
func benchPage(b *testing.B, h http.Handler, tok, target string) {
	b.Helper()
	req := httptest.NewRequest("GET", target, nil)
	req.AddCookie(&http.Cookie{Name: "outpost_token", Value: tok})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req) // the index loads at server start, not here
	if w.Code != http.StatusOK {
		b.Fatalf("%s: %d %s", target, w.Code, w.Body)
	}
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("%s: %d", target, w.Code)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/op")
}

// BenchmarkUIEnvironments100k renders pages of the environments list from a
// store of 100,000 environments: the whole page, status counts over the
// fleet, filters and sorts included.
func BenchmarkUIEnvironments100k(b *testing.B) {
	s, _ := testServer(b)
	_, tok := addBenchUser(b, s)
	seedFleet(b, s, 100_000)
	h := s.uiHandler()
	for _, q := range []string{
		"",
		"sort=name&page=500",
		"sort=-lastCheckIn",
		"status=online&mode=async&tag=3&sort=name",
		"q=device-0999",
	} {
		b.Run(q, func(b *testing.B) { benchPage(b, h, tok, "/environments?"+q) })
	}
}

// BenchmarkUIWaitingRoom10k renders pages of the waiting room with 10,000
// devices waiting: the page, the arrivals chart and the source networks
// over the whole room included.
func BenchmarkUIWaitingRoom10k(b *testing.B) {
	s, _ := testServer(b)
	_, tok := addBenchUser(b, s)
	now := s.now().Unix()
	for i := range 10_000 {
		d := &store.WaitingDevice{EdgeID: fmt.Sprintf("gw-%05d", (i*7919)%10_000), KeyFingerprint: fmt.Sprintf("SHA256:%043d", i),
			Hostname: fmt.Sprintf("till-%d", i), AgentVersion: "1.0.0", Platform: "docker", OS: "linux", Arch: "arm64", Mode: store.ModeAsync,
			Source: fmt.Sprintf("10.%d.%d.%d", i/65536, (i/256)%256, i%256), FirstSeen: now - int64(i%7200), LastSeen: now - int64(i%60)}
		if err := s.room.Add(d, s.store.AddWaiting); err != nil {
			b.Fatal(err)
		}
	}
	h := s.uiHandler()
	for _, q := range []string{"", "sort=-lastSeen&page=100", "sort=hostname", "q=gw-09"} {
		b.Run(q, func(b *testing.B) { benchPage(b, h, tok, "/waiting-room?"+q) })
	}
}
