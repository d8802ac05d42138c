package waitingroom

import (
	"errors"
	"slices"
	"testing"
	"time"

	"outpost/server/store"
)

func newTestRegistry(t *testing.T) *Registry {
	t.Helper()
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	return NewRegistry(NewLimiter(c.now), []store.WaitingDevice{{ID: 3, EdgeID: "gw-3", KeyFingerprint: "SHA256:three", FirstSeen: 1}},
		[]string{"SHA256:bad"}, []Binding{{Env: 9, KeyFingerprint: "SHA256:nine", EdgeID: "shop-9"}})
}

// add puts d, numbered already, into the room as a store write would.
func add(t *testing.T, r *Registry, d *store.WaitingDevice) {
	t.Helper()
	if err := r.Add(d, func(*store.WaitingDevice) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

var open = Rules{Max: 2, PerMinute: 100, PerNetwork: 100, Total: 100}

// TestRegistryPlacesAndReleases: a place is held from Place to Added or
// Release, counts against the room's size meanwhile, and a second arrival
// with the same key is told to call again.
func TestRegistryPlacesAndReleases(t *testing.T) {
	r := newTestRegistry(t)
	if k := r.Lookup("SHA256:nine"); k.Env != 9 {
		t.Fatalf("bound key: %+v", k)
	}
	if k := r.Lookup("SHA256:bad"); !k.Rejected {
		t.Fatalf("rejected key: %+v", k)
	}
	if k := r.Lookup("SHA256:three"); k.Waiting != 3 || k.EdgeID != "gw-3" {
		t.Fatalf("waiting key: %+v", k)
	}
	a := Arrival{EdgeID: "gw-4", KeyFP: "SHA256:four", Source: "192.0.2.4"}
	p := r.Place(open, a)
	if p.Decision != Wait || p.Again {
		t.Fatalf("first arrival: %+v", p)
	}
	if again := r.Place(open, a); !again.Again {
		t.Fatalf("the same key while it is being placed: %+v", again)
	}
	// The room holds 1 and reserves 1 of its 2: a third device finds it full.
	if full := r.Place(open, Arrival{EdgeID: "gw-5", KeyFP: "SHA256:five", Source: "192.0.2.5"}); full.Decision != Full {
		t.Fatalf("a device beyond the reserved place: %+v", full)
	}
	add(t, r, &store.WaitingDevice{ID: 4, EdgeID: "gw-4", KeyFingerprint: "SHA256:four"})
	if r.Size() != 2 || r.Placing() != 0 {
		t.Fatalf("after Added: size %d, placing %d", r.Size(), r.Placing())
	}
	// A failed store write gives the place back.
	r.Trusted(4, "SHA256:four", "gw-4", 10)
	p = r.Place(open, Arrival{EdgeID: "gw-6", KeyFP: "SHA256:six", Source: "192.0.2.6"})
	if p.Decision != Wait || r.Placing() != 2 {
		t.Fatalf("after a trust freed a place: %+v, placing %d", p, r.Placing())
	}
	r.Release("SHA256:six", p)
	if r.Placing() != 0 {
		t.Fatalf("after Release: placing %d", r.Placing())
	}
	if k := r.Lookup("SHA256:four"); k.Env != 10 || k.Waiting != 0 {
		t.Fatalf("trusted device: %+v", k)
	}
}

// TestRegistryPreauthorizedEdgeIDOnce: a preauthorized edge ID trusts its
// key while no environment carries it and no other arrival claims it.
func TestRegistryPreauthorizedEdgeIDOnce(t *testing.T) {
	r := newTestRegistry(t)
	rules := open
	rules.Max = 10
	rules.PreauthorizedEdgeIDs = []string{"gw-7 SHA256:seven", "shop-9 SHA256:other"}
	p := r.Place(rules, Arrival{EdgeID: "gw-7", KeyFP: "SHA256:seven", Source: "192.0.2.7"})
	if p.Decision != Trust || p.Claim != "gw-7" {
		t.Fatalf("preauthorized pair: %+v", p)
	}
	if q := r.Place(rules, Arrival{EdgeID: "gw-7", KeyFP: "SHA256:seven", Source: "192.0.2.7"}); !q.Again {
		t.Fatalf("the same device while being trusted: %+v", q)
	}
	r.Bound("SHA256:seven", "gw-7", 11)
	r.Release("SHA256:seven", p)
	if q := r.Place(rules, Arrival{EdgeID: "shop-9", KeyFP: "SHA256:other", Source: "192.0.2.9"}); q.Decision != Wait {
		t.Fatalf("a preauthorized edge ID an environment already carries: %+v", q)
	}
	if q := r.Place(rules, Arrival{EdgeID: "gw-8", KeyFP: "SHA256:eight", Source: "192.0.2.8", EdgeTaken: true}); q.Decision != Wait {
		t.Fatalf("an edge ID the store has taken: %+v", q)
	}
	// shop-9 was environment 9's, which is gone, and no other has it.
	if r.Rebind("shop-9", 9, 0) {
		t.Fatal("Rebind to none reports a binding")
	}
	if env, ok := r.EdgeEnv("shop-9"); ok {
		t.Fatalf("shop-9 still bound to %d", env)
	}
	r.Bound("SHA256:x", "shop-9", 12)
	if !r.Rebind("shop-9", 9, 0) {
		t.Fatal("Rebind dropped a binding made since the caller looked")
	}
}

// TestRegistryListsUpToTheNewest: IDs leaves out devices above the newest a
// listing saw, and List reports that newest over the whole room.
func TestRegistryListsUpToTheNewest(t *testing.T) {
	r := newTestRegistry(t)
	for _, id := range []uint64{5, 8} {
		add(t, r, &store.WaitingDevice{ID: id, EdgeID: "gw-" + string(rune('0'+id)), KeyFingerprint: "SHA256:" + string(rune('0'+id)), FirstSeen: int64(id)})
	}
	p := r.List(Query{Q: "GW-5", Limit: 10})
	if p.Total != 1 || p.Newest != 8 || p.Items[0].ID != 5 {
		t.Fatalf("list of gw-5: %+v", p)
	}
	add(t, r, &store.WaitingDevice{ID: 9, EdgeID: "gw-9", KeyFingerprint: "SHA256:9"})
	if ids := r.IDs("gw", 8); !slices.Equal(ids, []uint64{3, 5, 8}) {
		t.Fatalf("IDs up to 8: %v", ids)
	}
	p = r.List(Query{Sort: "firstSeen", Desc: true, Limit: 2, Offset: 1})
	if p.Total != 4 || len(p.Items) != 2 || p.Items[0].ID != 5 || p.Items[1].ID != 3 {
		t.Fatalf("second page, newest first: %+v", p)
	}
	if _, _, err := ParseSort("-size"); err == nil {
		t.Fatal("an unknown sort was accepted")
	}
}

// TestRegistryAddsInIDOrder: a device whose store write numbers it after
// another's waits for that one to enter the room, so a listing never has a
// Newest above a device that enters later with a lower ID (which "all that
// match" up to Newest would then take without having shown it).
func TestRegistryAddsInIDOrder(t *testing.T) {
	r := newTestRegistry(t)
	var next uint64 = 10
	number := func(d *store.WaitingDevice) { next++; d.ID = next }
	first := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 2)
	go func() {
		done <- r.Add(&store.WaitingDevice{EdgeID: "slow", KeyFingerprint: "SHA256:slow"}, func(d *store.WaitingDevice) error {
			number(d) // 11
			close(first)
			<-release // the write has not returned yet
			return nil
		})
	}()
	<-first
	secondWrote := make(chan struct{})
	go func() {
		done <- r.Add(&store.WaitingDevice{EdgeID: "fast", KeyFingerprint: "SHA256:fast"}, func(d *store.WaitingDevice) error {
			number(d) // 12
			close(secondWrote)
			return nil
		})
	}()
	select {
	case <-secondWrote:
		t.Fatal("a second device was stored while the first one's write was under way")
	case <-time.After(50 * time.Millisecond):
	}
	if p := r.List(Query{Q: "SHA256:", Limit: 10}); p.Newest != 3 {
		t.Fatalf("while the first device is being stored, the room's newest is %d, want 3", p.Newest)
	}
	close(release)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if ids := r.IDs("", 12); !slices.Equal(ids, []uint64{3, 11, 12}) {
		t.Fatalf("room after both: %v", ids)
	}
	// A failed write leaves the room as it was.
	if err := r.Add(&store.WaitingDevice{ID: 13, KeyFingerprint: "SHA256:lost"}, func(*store.WaitingDevice) error { return errors.New("disk full") }); err == nil || r.Size() != 3 {
		t.Fatalf("failed write: %v, size %d", err, r.Size())
	}
}
