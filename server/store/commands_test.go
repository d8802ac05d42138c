package store

import "testing"

func TestCommandLogPerEnvironment(t *testing.T) {
	s, _ := open(t)
	add := func(env uint64) uint64 {
		c := &Command{Env: env, Kind: "snapshot.now"}
		if err := s.AddCommand(c); err != nil {
			t.Fatal(err)
		}
		return c.ID
	}
	// Environments 1, 2 and 3 interleaved: scans must not cross them.
	var two []uint64
	for range 3 {
		add(1)
		two = append(two, add(2))
		add(3)
	}
	p, err := s.PendingCommands(2, 10)
	if err != nil || len(p) != 3 || p[0].ID != two[0] || p[2].ID != two[2] {
		t.Fatalf("pending of 2: %+v %v", p, err)
	}
	done, err := s.AckCommands(2, []Ack{{ID: two[0], OK: true}, {ID: two[2], Error: "boom"}, {ID: 9999}}, 5)
	if err != nil || len(done) != 2 {
		t.Fatalf("acks: %+v %v", done, err)
	}
	if done, _ := s.AckCommands(2, []Ack{{ID: two[0], OK: true}}, 6); len(done) != 1 || !done[0].Dup || done[0].Acked != 5 {
		t.Fatalf("a duplicate ack: %+v, want the command as first acked, marked Dup", done)
	}
	for _, env := range []uint64{2, 3} {
		r, err := s.CommandResults(env, 10)
		if err != nil {
			t.Fatal(err)
		}
		if env == 3 && len(r) != 0 {
			t.Fatalf("results of 3: %+v", r)
		}
		if env == 2 && (len(r) != 2 || r[0].ID != two[2] || r[0].Status != "failed" || r[1].ID != two[0] || r[1].Status != "ok") {
			t.Fatalf("results of 2, newest first: %+v", r)
		}
	}
	if p, _ := s.PendingCommands(2, 10); len(p) != 1 || p[0].ID != two[1] {
		t.Fatalf("pending of 2 after acks: %+v", p)
	}
	// The last environment's results are found too (no key after them).
	id := add(7)
	if _, err := s.AckCommands(7, []Ack{{ID: id, OK: true}}, 7); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.CommandResults(7, 10); len(r) != 1 || r[0].ID != id {
		t.Fatalf("results of the last environment: %+v", r)
	}
}
