package usage

import (
	"testing"
	"time"
)

func TestMeter(t *testing.T) {
	var m Meter
	t0 := time.Date(2026, 12, 7, 23, 59, 0, 0, time.UTC)
	m.Add(1, t0, 100, 40)
	m.Add(1, t0.Add(30*time.Second), 10, 4)
	m.Add(1, t0.Add(2*time.Minute), 7, 3) // the next day
	m.Add(2, t0, 1, 1)
	today, tomorrow := DayOf(t0), DayOf(t0)+1
	if got := m.Pending(Key{1, today}); got != (Day{In: 110, Out: 44, Exchanges: 2}) {
		t.Fatalf("day 1: %+v", got)
	}
	if got := m.Pending(Key{1, tomorrow}).Total(); got != 7+3+Overhead {
		t.Fatalf("next day total %d", got)
	}
	d := m.Take()
	if len(d) != 3 || m.Pending(Key{1, today}) != (Day{}) {
		t.Fatalf("take: %v, left %+v", d, m.Pending(Key{1, today}))
	}
	m.Add(1, t0, 1, 1)
	m.PutBack(d)
	if got := m.Pending(Key{1, today}); got != (Day{In: 111, Out: 45, Exchanges: 3}) {
		t.Fatalf("after put back: %+v", got)
	}
	if !Date(today).Equal(time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("date of day %d: %v", today, Date(today))
	}
}
