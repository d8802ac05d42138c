package server

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"outpost/protocol"
	"outpost/scheduler"
)

// lockedBuffer is a log sink safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// slowDowns reads outpost_edge_slow_downs_total{kind}.
func slowDowns(t *testing.T, s *Server, kind string) int {
	t.Helper()
	var m dto.Metric
	if err := s.metrics.slowDowns.WithLabelValues(kind).Write(&m); err != nil {
		t.Fatal(err)
	}
	return int(m.GetCounter().GetValue())
}

// A device calling far faster than its frequency allows is told to slow
// down, with how long to wait; it is counted and logged once a minute. Its
// neighbours, and requests that do not prove its key, are not affected.
func TestDeviceCallingTooFastIsSlowedDown(t *testing.T) {
	s, hs := testServer(t)
	logs := &lockedBuffer{}
	s.log = slog.New(slog.NewTextHandler(logs, nil))
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	freq := &protocol.Frequencies{Ping: 5, Snapshot: 5, Command: 5}
	flooder := newDevice(t, hs.Config.Handler, stage(t, s, freq), "edge-flood")
	calm := newDevice(t, hs.Config.Handler, stage(t, s, freq), "edge-calm")
	for _, d := range []*device{flooder, calm} {
		if status, _, perr := d.sync(d.firstContact()); status != http.StatusOK {
			t.Fatalf("first contact: %d %v", status, perr)
		}
	}
	limit := scheduler.Limit(5 * time.Second)
	// A copy of the flooder's edge key without its keys: refused, and not
	// counted against it.
	forger := newDevice(t, hs.Config.Handler, flooder.env, "edge-flood")
	forger.mac = bytes.Repeat([]byte{1}, 32)
	for range 2 * limit {
		if status, _, _ := forger.sync(forger.ping()); status != http.StatusForbidden {
			t.Fatalf("forged ping: %d", status)
		}
	}
	// The flooder: 10 calls a second for a minute.
	var first *protocol.Error
	slowed := 0
	for i := 1; i < 600; i++ {
		status, _, perr := flooder.sync(flooder.ping())
		switch {
		case i < limit && status != http.StatusOK:
			t.Fatalf("call %d of %d allowed: %d %v", i+1, limit, status, perr)
		case i >= limit && (status != http.StatusTooManyRequests || perr == nil || perr.Code != protocol.CodeSlowDown):
			t.Fatalf("call %d over the limit of %d: %d %+v", i+1, limit, status, perr)
		case i >= limit:
			if first == nil {
				first = perr
			}
			slowed++
		}
		if i%50 == 0 { // a calm device's ping every 5 s, between them
			if status, _, perr := calm.sync(calm.ping()); status != http.StatusOK {
				t.Fatalf("the calm device was refused: %d %v", status, perr)
			}
		}
		advance(100 * time.Millisecond)
	}
	if first.RetryAfter == 0 || first.RetryAfter > 60 || !strings.Contains(first.Message, "slow") && !strings.Contains(first.Message, "allows") {
		t.Fatalf("slow_down answer: %+v", first)
	}
	if got := slowDowns(t, s, "sync"); got != slowed {
		t.Fatalf("outpost_edge_slow_downs_total{kind=sync} = %d, want %d", got, slowed)
	}
	if n := logs.count("told to slow down"); n != 1 {
		t.Fatalf("%d log lines for one minute of flooding, want 1", n)
	}
	// Once it waits as told, it is served again.
	advance(time.Duration(first.RetryAfter) * time.Second)
	if status, _, perr := flooder.sync(flooder.ping()); status != http.StatusOK {
		t.Fatalf("after waiting: %d %v", status, perr)
	}
}

// A device in the waiting room that calls far too fast is slowed down too.
func TestWaitingDeviceCallingTooFastIsSlowedDown(t *testing.T) {
	s, hs := testServer(t)
	d := onboardingDevice(t, hs, "edge-waiting")
	every := time.Duration(s.waitingFrequencies(false).Ping) * time.Second
	limit := scheduler.Limit(every)
	for i := range limit + 1 { // the first call places it: only later ones count
		if status, ans, perr := d.callIn(); status != http.StatusOK || ans.Trust != protocol.TrustWaiting {
			t.Fatalf("call %d: %d %v", i+1, status, perr)
		}
	}
	status, _, perr := d.callIn()
	if status != http.StatusTooManyRequests || perr.Code != protocol.CodeSlowDown || perr.RetryAfter == 0 {
		t.Fatalf("call %d of a waiting device: %d %+v", limit+2, status, perr)
	}
	if got := slowDowns(t, s, "waiting"); got != 1 {
		t.Fatalf("outpost_edge_slow_downs_total{kind=waiting} = %d", got)
	}
}
