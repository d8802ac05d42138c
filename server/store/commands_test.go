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

// TestQueueTargetCommandsInOneTransaction queues a chunk in which later
// commands supersede earlier ones of the same environment and one
// environment is gone: each sees what the ones before it wrote.
func TestQueueTargetCommandsInOneTransaction(t *testing.T) {
	s, _ := open(t)
	e := &Environment{Name: "a"}
	if err := s.CreateEnvironment(e); err != nil {
		t.Fatal(err)
	}
	sameStack := func(old Command) bool { return old.Kind == "stack.deploy" }
	var qs []Queued
	for v := uint64(1); v <= 3; v++ {
		qs = append(qs, Queued{
			Command:    &Command{Env: e.ID, Kind: "stack.deploy"},
			Supersedes: sameStack,
			Target:     Target{Stack: &StackStatus{Stack: 7, Env: e.ID, Version: v}},
		})
	}
	gone := &Command{Env: e.ID + 100, Kind: "stack.deploy"}
	qs = append(qs, Queued{Command: gone, Supersedes: sameStack, Target: Target{Stack: &StackStatus{Stack: 7, Env: e.ID + 100, Version: 1}}})
	if err := s.QueueTargetCommands(qs); err != nil {
		t.Fatal(err)
	}
	p, err := s.PendingCommands(e.ID, 10)
	if err != nil || len(p) != 1 || p[0].ID != qs[2].Command.ID {
		t.Fatalf("pending: %+v %v; want only the last of the chunk, %d", p, err, qs[2].Command.ID)
	}
	st, err := s.StackStatuses(7)
	if err != nil || len(st) != 1 || st[0].Version != 3 || st[0].Env != e.ID {
		t.Fatalf("statuses: %+v %v; want version 3 on %d only", st, err, e.ID)
	}
	if gone.ID != 0 {
		t.Fatalf("a command for an environment that is gone got ID %d", gone.ID)
	}
}
