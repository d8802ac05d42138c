package server

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"outpost/server/store"
)

// BenchmarkReconcile100k runs the reconciler over 100,000 environments, all
// in one edge group that one stack targets: the first pass queues a deploy
// for each trusted one (reported as first-pass-ms), later passes find nothing to do
// (ms/op). Every API change kicks a pass.
func BenchmarkReconcile100k(b *testing.B) {
	const n = 100_000
	s, _ := testServer(b)
	seedFleet(b, s, n)
	var tags []uint64
	ts, err := s.store.Tags()
	if err != nil {
		b.Fatal(err)
	}
	for _, t := range ts {
		tags = append(tags, t.ID)
	}
	g := &store.EdgeGroup{Name: "all", Dynamic: true, TagIDs: tags, Match: "any"}
	if err := s.store.CreateEdgeGroup(g); err != nil {
		b.Fatal(err)
	}
	s.fleet = fleet{} // loaded again, with the group, at its next use
	content := []byte("services: {web: {image: busybox}}\n")
	sum := sha256.Sum256(content)
	st := &store.EdgeStack{Name: "web", Hash: hex.EncodeToString(sum[:]), EdgeGroupIDs: []uint64{g.ID}}
	if err := s.store.CreateStack(st, content); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := s.reconcile(); err != nil {
		b.Fatal(err)
	}
	first := time.Since(start)
	statuses, err := s.store.StackStatuses(st.ID)
	if want := n - n/10; err != nil || len(statuses) != want { // seedFleet trusts 9 in 10
		b.Fatalf("after the first pass: %d statuses, err %v; want %d", len(statuses), err, want)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := s.reconcile(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/op")
	b.ReportMetric(float64(first.Milliseconds()), "first-pass-ms")
}
