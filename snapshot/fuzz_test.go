package snapshot_test

import (
	"math/rand/v2"
	"testing"

	"outpost/internal/corpus"
	"outpost/protocol"
	"outpost/snapshot"
)

// FuzzApplyDelta: the server decodes a delta from any device and applies it
// to what it stored. Arbitrary bytes must neither panic nor produce a
// snapshot that fails to encode.
func FuzzApplyDelta(f *testing.F) {
	caps, err := corpus.Load("../testdata/docker")
	if err != nil {
		f.Fatal(err)
	}
	base := caps[0].Docker
	for _, c := range caps[:1] {
		next, _ := corpus.StopOne(c.Docker, 1_800_000_000)
		d, err := snapshot.Compute(c.Docker, next)
		if err != nil {
			f.Fatal(err)
		}
		b, _ := protocol.Marshal(d)
		f.Add(b)
	}
	f.Add([]byte{0xa1, 0x02, 0xa1, 0x03, 0x81, 0x6c, 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var d snapshot.Delta
		if err := protocol.Unmarshal(b, &d); err != nil {
			return
		}
		got, err := snapshot.Apply(base, &d)
		if err != nil {
			return
		}
		if _, err := snapshot.Hash(got); err != nil {
			t.Fatalf("applied snapshot does not encode: %v", err)
		}
	})
}

// FuzzDockerSnapshot: a full snapshot from any device decodes, normalizes
// and hashes without panicking, and the hash survives a round trip.
func FuzzDockerSnapshot(f *testing.F) {
	caps, err := corpus.Load("../testdata/docker")
	if err != nil {
		f.Fatal(err)
	}
	// Small real devices: the fuzzer mutates kilobytes far better than the
	// tens of kilobytes of a whole capture.
	r := rand.New(rand.NewPCG(1, 1))
	for n := 1; n <= 3; n++ {
		b, _ := protocol.Marshal(corpus.Subset(r, caps[1].Docker, n))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d snapshot.Snapshot
		if err := protocol.Unmarshal(b, &d); err != nil {
			return
		}
		snapshot.Normalize(&d)
		h1, err := snapshot.Hash(&d)
		if err != nil {
			t.Fatal(err)
		}
		enc, _ := protocol.Marshal(&d)
		var again snapshot.Snapshot
		if err := protocol.Unmarshal(enc, &again); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		snapshot.Normalize(&again)
		if h2, _ := snapshot.Hash(&again); h1 != h2 {
			t.Fatal("hash changed across a round trip")
		}
	})
}
