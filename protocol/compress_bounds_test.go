package protocol_test

// Tests of the two encoders of Compress at their bounds, under concurrency, and against bodies of agents that compressed at the best level.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"

	"outpost/protocol"
)

// boundBodies are bodies of the sizes around every bound of the encoders
// (16 KiB, the 64 KiB and 256 KiB windows, the 128 KiB block) in three kinds
// of content: CBOR like the agent's, random bytes, zeros.
func boundBodies(t *testing.T) map[string][]byte {
	t.Helper()
	snap, err := protocol.Marshal(largeRequest())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	out := map[string][]byte{}
	for _, n := range []int{0, 1, 2, 100, 16<<10 - 1, 16 << 10, 16<<10 + 1, 32<<10 + 7, 64<<10 - 1, 64 << 10, 64<<10 + 1,
		128<<10 - 1, 128 << 10, 128<<10 + 1, 256<<10 - 1, 256 << 10, 256<<10 + 1, 1 << 20, 3<<20 + 5} {
		cbor := bytes.Repeat(snap, n/len(snap)+1)[:n]
		rnd := make([]byte, n)
		for i := range rnd {
			rnd[i] = byte(rng.Uint32())
		}
		out[fmt.Sprintf("cbor-%d", n)] = cbor
		out[fmt.Sprintf("random-%d", n)] = rnd
		out[fmt.Sprintf("zeros-%d", n)] = make([]byte, n)
	}
	return out
}

// TestCompressRoundTripAtEveryBound: every size around the bounds decodes to what
// was compressed.
func TestCompressRoundTripAtEveryBound(t *testing.T) {
	needDictionary(t)
	for name, b := range boundBodies(t) {
		z, err := protocol.Compress(b)
		if err != nil {
			t.Fatalf("%s: Compress: %v", name, err)
		}
		got, err := protocol.Decompress(z)
		if err != nil {
			t.Errorf("%s: Decompress: %v", name, err)
			continue
		}
		if !bytes.Equal(got, b) {
			t.Errorf("%s: round trip changed the body", name)
		}
	}
}

// TestCompressConcurrent: Compress from many goroutines at once, as
// the server calls it, small and large bodies mixed (run with -race).
func TestCompressConcurrent(t *testing.T) {
	needDictionary(t)
	bodies := boundBodies(t)
	var list [][]byte
	for _, b := range bodies {
		if len(b) <= 300<<10 {
			list = append(list, b)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for i := range 60 {
				b := list[(g*31+i*7)%len(list)]
				z, err := protocol.Compress(b)
				if err != nil {
					errs <- err
					return
				}
				got, err := protocol.Decompress(z)
				if err != nil || !bytes.Equal(got, b) {
					errs <- fmt.Errorf("goroutine %d body of %d bytes: %v, equal %v", g, len(b), err, bytes.Equal(got, b))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestDecodeBodiesOfOlderAgents: frames as agents before this change wrote
// them (SpeedBestCompression, with and without the dictionary, EncodeAll)
// still decode, also above the window sizes the new encoders use.
func TestDecodeBodiesOfOlderAgents(t *testing.T) {
	needDictionary(t)
	dict, err := os.ReadFile("dict/v1.zdict")
	if err != nil {
		t.Fatal(err)
	}
	opts := []zstd.EOption{
		zstd.WithEncoderLevel(zstd.SpeedBestCompression),
		zstd.WithEncoderCRC(false),
		zstd.WithEncoderConcurrency(1),
		zstd.WithZeroFrames(true),
		zstd.WithLowerEncoderMem(true),
	}
	plain, err := zstd.NewWriter(nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	withDict, err := zstd.NewWriter(nil, append(opts, zstd.WithEncoderDict(dict))...)
	if err != nil {
		t.Fatal(err)
	}
	bodies := boundBodies(t)
	snap, _ := protocol.Marshal(largeRequest())
	bodies["cbor-20MiB"] = bytes.Repeat(snap, 20<<20/len(snap))
	for name, b := range bodies {
		for kind, enc := range map[string]*zstd.Encoder{"plain": plain, "dict": withDict} {
			z := enc.EncodeAll(b, nil)
			if len(z) > protocol.MaxCompressedBody {
				continue
			}
			got, err := protocol.Decompress(z)
			if err != nil {
				t.Errorf("%s %s (old agent, best level): Decompress: %v", name, kind, err)
				continue
			}
			if !bytes.Equal(got, b) {
				t.Errorf("%s %s: round trip changed the body", name, kind)
			}
			if len(b) <= protocol.MaxUnprovedBody {
				if _, err := protocol.InflateLimit(z, protocol.EncodingZstd, protocol.MaxUnprovedBody); err != nil {
					t.Errorf("%s %s (old agent, best level, unproved): %v", name, kind, err)
				}
			}
		}
	}
}
