package protocol_test

import (
	"fmt"
	"runtime"
	"testing"

	"outpost/protocol"
)

// liveHeap is the heap's live bytes after full collections: three, since a
// sync.Pool drops what it holds over two.
func liveHeap() int64 {
	var m runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// TestCompressMemory: compressing costs megabytes while it runs and keeps
// about one afterwards. The package used to keep a SpeedBestCompression
// encoder for the life of the process, 76 MiB of match tables and history
// whatever the body's size: three quarters of an idle agent's memory
// (issue 13). Sizes, not timings, so it holds on a loaded machine.
func TestCompressMemory(t *testing.T) {
	needDictionary(t)
	var small []byte // a delta's worth: under the small-body bound (16 KiB)
	for i := 0; len(small) < 300; i++ {
		small = fmt.Appendf(small, "c%03d exited 137;", i)
	}
	large, err := protocol.Marshal(largeRequest()) // a full snapshot's worth, 27 KB
	if err != nil {
		t.Fatal(err)
	}

	before := liveHeap()
	var zs, zl []byte
	n := allocated(func() {
		zs, _ = protocol.Compress(small)
		zl, _ = protocol.Compress(large)
	})
	kept := liveHeap() - before
	runtime.KeepAlive(zs)
	runtime.KeepAlive(zl)
	if len(zs) == 0 || len(zl) == 0 || len(zl) >= len(large) {
		t.Fatalf("compressed %d -> %d and %d -> %d bytes", len(small), len(zs), len(large), len(zl))
	}
	t.Logf("compressing %d and %d bytes allocated %.1f MiB and kept %.1f MiB", len(small), len(large), float64(n)/(1<<20), float64(kept)/(1<<20))
	// Measured: 9 to 10 MiB allocated (the encoders made at first use,
	// mostly the large bodies' 8.8 MiB), at most 0.9 MiB kept (the small
	// bodies' encoder, when no test before made it).
	if n > 24<<20 {
		t.Errorf("compressing two bodies allocated %d MiB: an encoder at a costlier level or window is back", n>>20)
	}
	if kept > 3<<20 {
		t.Errorf("compressing kept %.1f MiB on the heap after garbage collection: an encoder is held again", float64(kept)/(1<<20))
	}
}
