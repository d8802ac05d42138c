package protocol_test

import (
	"bytes"
	"errors"
	"testing"

	"outpost/internal/golden"
	"outpost/protocol"
)

// Seeds beyond the golden vectors live in testdata/fuzz/<FuzzName>/; run a
// target with go test -run '^$' -fuzz '^FuzzSyncRequest$' ./protocol.

// handSeeds are bodies every message target starts from besides the golden
// vectors: edge cases of the codec that a mutator reaches slowly.
var handSeeds = [][]byte{
	{},
	{0xa0},                               // empty map
	{0xa1, 0x01, 0x01},                   // version only
	{0xa2, 0x01, 0x01, 0x01, 0x01},       // duplicate key
	{0xbf, 0x01, 0x01, 0xff},             // indefinite-length map
	{0xa2, 0x01, 0x01, 0x18, 0x63, 0xf6}, // unknown key 99
	{0xa1, 0x01, 0x01, 0x00},             // trailing byte
	append([]byte{0xa2, 0x01, 0x01, 0x18, 0x63}, nested(protocol.MaxNestingDepth)...),
	{0xa2, 0x01, 0x01, 0x18, 0x63, 0x9a, 0x00, 0x01, 0x00, 0x01}, // array header past MaxArrayElements
	{0x28, 0xb5, 0x2f, 0xfd, 0x20, 0xff, 0xfb, 0x07, 0x00, 0x00}, // zstd frame of 255 zeros
}

// goldenSeeds returns the golden vectors of typeName, plain and compressed
// with and without the dictionary.
func goldenSeeds(tb testing.TB, typeName string) [][]byte {
	tb.Helper()
	var out [][]byte
	for _, g := range golden.ReadDir(tb, goldenDir) {
		if g.TypeName != typeName {
			continue
		}
		z, err := protocol.Compress(g.Data)
		if err != nil {
			tb.Fatal(err)
		}
		p, err := protocol.CompressPlain(g.Data)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, g.Data, z, p)
	}
	if len(out) == 0 {
		tb.Fatalf("no golden vector of type %s to seed from", typeName)
	}
	return out
}

// checkSentinel requires err to match one of the package's body errors.
func checkSentinel(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, protocol.ErrMalformed) && !errors.Is(err, protocol.ErrLimit) && !errors.Is(err, protocol.ErrUnknownDictionary) {
		t.Fatalf("error matches no sentinel: %v", err)
	}
}

// fuzzMessage reads data as a body of a T, plain and as zstd. Whatever
// decodes must re-encode to bytes that decode again and encode the same: the
// encoding is deterministic and a fixed point after one round.
func fuzzMessage[T any](f *testing.F, typeName string) {
	for _, s := range goldenSeeds(f, typeName) {
		f.Add(s)
	}
	for _, s := range handSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, enc := range []string{"", protocol.EncodingZstd} {
			var v T
			if err := protocol.ReadBody(data, enc, &v); err != nil {
				checkSentinel(t, err)
				continue
			}
			b1, err := protocol.Marshal(&v)
			if err != nil {
				t.Fatalf("encoding %q: decoded %+v, which does not encode: %v", enc, v, err)
			}
			var w T
			if err := protocol.Unmarshal(b1, &w); err != nil {
				t.Fatalf("encoding %q: re-encoded %x does not decode: %v", enc, b1, err)
			}
			b2, err := protocol.Marshal(&w)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b1, b2) {
				t.Fatalf("encoding %q: not a fixed point\nfirst:  %x\nsecond: %x", enc, b1, b2)
			}
		}
	})
}

func FuzzSyncRequest(f *testing.F) { fuzzMessage[protocol.SyncRequest](f, "SyncRequest") }
func FuzzSyncAnswer(f *testing.F)  { fuzzMessage[protocol.SyncAnswer](f, "SyncAnswer") }
func FuzzError(f *testing.F)       { fuzzMessage[protocol.Error](f, "Error") }

func FuzzDecompress(f *testing.F) {
	for _, typeName := range []string{"SyncRequest", "SyncAnswer"} {
		for _, s := range goldenSeeds(f, typeName) {
			f.Add(s)
		}
	}
	for _, s := range handSeeds {
		f.Add(s)
	}
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00, 0x07, 0x00, 0x00})                               // reserved block type
	f.Add([]byte{0x50, 0x2a, 0x4d, 0x18, 0x02, 0x00, 0x00, 0x00, 0x01, 0x02})                         // skippable frame
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x23, 0xc7, 0xd1, 0x57, 0x7e, 0x01, 0x09, 0x00, 0x00, 0x41}) // "A" with unknown dictionary 0x7e57d1c7
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := protocol.Decompress(data)
		if err != nil {
			checkSentinel(t, err)
			if out != nil {
				t.Errorf("error %v with %d bytes of output", err, len(out))
			}
			return
		}
		if len(out) > protocol.MaxDecompressedBody {
			t.Fatalf("inflated to %d bytes, past MaxDecompressedBody", len(out))
		}
		if len(out) > 1<<16 {
			return // keep iterations fast
		}
		for _, compress := range []func([]byte) ([]byte, error){protocol.Compress, protocol.CompressPlain} {
			z, err := compress(out)
			if err != nil {
				t.Fatal(err)
			}
			back, err := protocol.Decompress(z)
			if err != nil || !bytes.Equal(back, out) {
				t.Fatalf("recompressed output does not round trip: %v", err)
			}
		}
	})
}

func FuzzEdgeKey(f *testing.F) {
	for _, k := range []protocol.EdgeKey{
		{ServerURL: "https://outpost.example.com", TunnelAddr: "outpost.example.com:8000", TunnelFingerprint: testFingerprint},
		{ServerURL: "https://[2001:db8::1]:9443/p", TunnelAddr: "[2001:db8::1]:8000", TunnelFingerprint: testFingerprint, EnvironmentID: 1<<64 - 1},
	} {
		f.Add(k.String())
	}
	f.Add("")
	f.Add(key(0, "https://:443"))
	f.Add(key(1, "h:0"))
	f.Add(key(3, "007"))
	f.Add(rawKey("a", "b", "c", "d", "e"))
	f.Fuzz(func(t *testing.T, s string) {
		k, err := protocol.ParseEdgeKey(s)
		if err != nil {
			n := 0
			for _, e := range keySentinels {
				if errors.Is(err, e) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("error matches %d key sentinels, want 1: %v", n, err)
			}
			if k != (protocol.EdgeKey{}) {
				t.Fatalf("refused key returned %#v", k)
			}
			return
		}
		again, err := protocol.ParseEdgeKey(k.String())
		if err != nil {
			t.Fatalf("%#v parsed from %q, but its String() %q does not parse: %v", k, s, k.String(), err)
		}
		if again != k {
			t.Fatalf("round trip: %#v, then %#v", k, again)
		}
	})
}
