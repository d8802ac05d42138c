package server

import (
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"outpost/usage"
)

func counter(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestDataUsageIsCountedPerDevice: every exchange a device makes is counted
// against it, request and answer bodies as sent, and the counts survive
// the flush into the store; a refused request from someone else is not.
func TestDataUsageIsCountedPerDevice(t *testing.T) {
	s, hs := testServer(t)
	dev := bound(t, s, hs.Config.Handler, "meter")
	other := bound(t, s, hs.Config.Handler, "other")
	s.flush()
	before := map[uint64]usage.Day{}
	for _, env := range []uint64{dev.env, other.env} {
		d, err := s.store.Usage(env, usage.DayOf(s.now()), usage.DayOf(s.now()))
		if err != nil {
			t.Fatal(err)
		}
		before[env] = d[usage.DayOf(s.now())]
	}
	outBefore := counter(t, s.metrics.bytesOut)
	var sent uint64
	for range 5 {
		if status, _, perr := dev.sync(dev.ping()); status != http.StatusOK {
			t.Fatalf("%d %+v", status, perr)
		}
		sent += uint64(len(dev.last))
	}
	answered := uint64(counter(t, s.metrics.bytesOut) - outBefore)
	// A forged request naming the device's environment costs it nothing.
	forger := newDevice(t, hs.Config.Handler, dev.env, "meter")
	forger.mac = make([]byte, 32)
	if status, _, _ := forger.sync(forger.ping()); status != http.StatusForbidden {
		t.Fatalf("forged: %d", status)
	}
	s.flush()
	day := usage.DayOf(s.now())
	got, err := s.store.Usage(dev.env, day, day)
	if err != nil {
		t.Fatal(err)
	}
	d := got[day]
	d.In, d.Out, d.Exchanges = d.In-before[dev.env].In, d.Out-before[dev.env].Out, d.Exchanges-before[dev.env].Exchanges
	if d.Exchanges != 5 || d.In != sent || d.Out != answered {
		t.Fatalf("counted %+v; want 5 exchanges, %d bytes in, %d out", d, sent, answered)
	}
	if o, _ := s.store.Usage(other.env, day, day); o[day] != before[other.env] {
		t.Fatalf("the other device's count moved: %+v", o[day])
	}
	days, err := uiBackend{s}.Usage(dev.env)
	if err != nil || len(days) != 30 || days[29].Exchanges != before[dev.env].Exchanges+5 {
		t.Fatalf("the UI's 30 days: %d days, last %+v, %v", len(days), days[len(days)-1], err)
	}
	top, err := uiBackend{s}.TopUsage(5)
	if err != nil || len(top) != 2 || top[0].EnvID != dev.env {
		t.Fatalf("top: %+v %v", top, err)
	}
}
