package store

import (
	"testing"

	"outpost/usage"
)

func TestUsageAddsTrimsAndSums(t *testing.T) {
	s, _ := open(t)
	const today = 20_000
	for i := range 3 {
		if err := s.AddUsage(map[usage.Key]usage.Day{
			{Env: 1, Day: today}:     {In: 100, Out: 50, Exchanges: 2},
			{Env: 1, Day: today - 1}: {In: 10, Out: 5, Exchanges: 1},
			{Env: 2, Day: today}:     {In: uint64(i), Exchanges: 1},
		}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Usage(1, today-usage.Days, today)
	if err != nil || len(got) != 2 || got[today] != (usage.Day{In: 300, Out: 150, Exchanges: 6}) || got[today-1].In != 30 {
		t.Fatalf("usage of 1: %v %v", got, err)
	}
	// A day past the kept window drops the oldest.
	if err := s.AddUsage(map[usage.Key]usage.Day{{Env: 1, Day: today - 1 + usage.Days + 1}: {In: 1, Exchanges: 1}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Usage(1, today-2, today); got[today-1] != (usage.Day{}) || got[today].In != 300 {
		t.Fatalf("after the window moved: %v", got)
	}
	sums, err := s.UsageSince(today)
	if err != nil || sums[1].In != 301 || sums[2] != (usage.Day{In: 3, Exchanges: 3}) {
		t.Fatalf("sums: %v %v", sums, err)
	}
}
