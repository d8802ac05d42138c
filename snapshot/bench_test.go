package snapshot_test

import (
	"testing"

	"outpost/protocol"
	"outpost/snapshot"
)

// BenchmarkCompute: the agent's cost of a delta on each tick, for the
// 500-container capture with one container stopped.
func BenchmarkCompute500(b *testing.B) {
	base := captures(b)["docker-500.json"]
	next := clone(b, base)
	next.Containers[7].State = snapshot.StateExited
	b.ReportAllocs()
	for b.Loop() {
		if _, err := snapshot.Compute(base, next); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApply500: the server's cost of applying that delta.
func BenchmarkApply500(b *testing.B) {
	base := captures(b)["docker-500.json"]
	next := clone(b, base)
	next.Containers[7].State = snapshot.StateExited
	d, err := snapshot.Compute(base, next)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := snapshot.Apply(base, d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHash500: the canonical hash both sides compute per push.
func BenchmarkHash500(b *testing.B) {
	d := captures(b)["docker-500.json"]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := snapshot.Hash(d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode500: decoding a stored 500-container snapshot.
func BenchmarkDecode500(b *testing.B) {
	raw, err := protocol.Marshal(captures(b)["docker-500.json"])
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		var d snapshot.Snapshot
		if err := protocol.Unmarshal(raw, &d); err != nil {
			b.Fatal(err)
		}
	}
}
