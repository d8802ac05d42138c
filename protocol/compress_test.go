package protocol_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"outpost/protocol"
)

// The tests here measure allocations with runtime.MemStats, so none of the
// package's tests may run in parallel.

// needDictionary skips a test that needs the embedded zstd dictionary when the
// build has none yet, except in CI, where a missing dictionary is a failure.
func needDictionary(t *testing.T) {
	t.Helper()
	if protocol.DictionaryID() != 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no zstd dictionary under protocol/dict: CI must build with it (go generate ./protocol)")
	}
	t.Skip("no zstd dictionary under protocol/dict yet (go generate ./protocol); skipping a test that needs it")
}

// frameHeader decodes the header of the zstd frame b starts with.
func frameHeader(t *testing.T, b []byte) zstd.Header {
	t.Helper()
	var h zstd.Header
	if err := h.Decode(b); err != nil {
		t.Fatalf("zstd header of %x: %v", b[:min(len(b), 16)], err)
	}
	return h
}

// largeRequest is a SyncRequest whose snapshot is big and repetitive enough
// for zstd to gain, as a real full snapshot is.
func largeRequest() *protocol.SyncRequest {
	var containers []any
	for i := range 200 {
		containers = append(containers, map[int]any{
			1: fmt.Sprintf("c%03d", i),
			2: "registry.example.com/shop/pos-frontend:2.14.1",
			3: "running",
			4: map[string]string{"com.docker.compose.project": "pos", "com.docker.compose.service": "frontend"},
		})
	}
	return &protocol.SyncRequest{
		Version:  protocol.Version,
		EnvID:    7,
		Include:  protocol.IncludePing | protocol.IncludeSnapshot,
		Snapshot: &protocol.SnapshotPush{Seq: 1, Data: mustMarshal(map[int]any{1: "docker", 2: containers})},
	}
}

func TestBodyRoundTrip(t *testing.T) {
	idle := &protocol.SyncRequest{Version: protocol.Version, EnvID: 7, Include: protocol.IncludePing}
	for _, tc := range []struct {
		name     string
		msg      any
		encoding string
	}{
		{"small goes plain", idle, ""},
		{"large goes zstd", largeRequest(), protocol.EncodingZstd},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := protocol.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			body, enc, err := protocol.WriteBody(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if enc != tc.encoding {
				t.Fatalf("encoding %q, want %q (raw %d bytes, body %d)", enc, tc.encoding, len(raw), len(body))
			}
			switch enc {
			case "":
				if !bytes.Equal(body, raw) {
					t.Errorf("plain body is not the CBOR encoding:\n%x\n%x", body, raw)
				}
			case protocol.EncodingZstd:
				if len(body) >= len(raw) {
					t.Errorf("compressed body %d bytes, raw %d", len(body), len(raw))
				}
				if h := frameHeader(t, body); h.DictionaryID != protocol.DictionaryID() {
					t.Errorf("frame dictionary ID %d, want the current one %d", h.DictionaryID, protocol.DictionaryID())
				}
			}
			got := reflect.New(reflect.TypeOf(tc.msg).Elem()).Interface()
			if err := protocol.ReadBody(body, enc, got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.msg) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, tc.msg)
			}
		})
	}

	// Every golden vector survives the body framing, whichever encoding
	// WriteBody picks.
	for _, v := range goldenVectors {
		body, enc, err := protocol.WriteBody(v.value)
		if err != nil {
			t.Fatalf("%s: %v", v.file, err)
		}
		got := newMessage[typeName(v.value)]()
		if err := protocol.ReadBody(body, enc, got); err != nil {
			t.Fatalf("%s (encoding %q): %v", v.file, enc, err)
		}
		if !reflect.DeepEqual(got, v.value) {
			t.Errorf("%s (encoding %q): got %+v", v.file, enc, got)
		}
	}
}

func TestReadBodyEncodings(t *testing.T) {
	msg := largeRequest()
	raw, err := protocol.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("zstd without dictionary", func(t *testing.T) {
		z, err := protocol.CompressPlain(raw)
		if err != nil {
			t.Fatal(err)
		}
		if h := frameHeader(t, z); h.DictionaryID != 0 {
			t.Fatalf("CompressPlain frame names dictionary %d", h.DictionaryID)
		}
		var got protocol.SyncRequest
		if err := protocol.ReadBody(z, protocol.EncodingZstd, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&got, msg) {
			t.Error("round trip differs")
		}
	})

	t.Run("identity", func(t *testing.T) {
		// HTTP's explicit "no encoding" is read as plain CBOR.
		var got protocol.SyncRequest
		if err := protocol.ReadBody(raw, "identity", &got); err != nil {
			t.Fatal(err)
		}
	})

	for _, enc := range []string{"gzip", "br", "deflate", "zstd, gzip", "x-zstd", "compress"} {
		t.Run("unknown "+enc, func(t *testing.T) {
			var got protocol.SyncRequest
			err := protocol.ReadBody(raw, enc, &got)
			if !errors.Is(err, protocol.ErrContentEncoding) {
				t.Fatalf("ReadBody(encoding %q) = %v, want ErrContentEncoding", enc, err)
			}
			if !strings.Contains(err.Error(), enc) {
				t.Errorf("message %q does not name the encoding", err)
			}
		})
	}
}

func TestUnknownDictionary(t *testing.T) {
	raw, err := protocol.Marshal(largeRequest())
	if err != nil {
		t.Fatal(err)
	}
	id := uint32(0x7e57d1c7)
	if id == protocol.DictionaryID() {
		id++
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderDictRaw(id, bytes.Repeat([]byte("registry.example.com/shop/"), 64)))
	if err != nil {
		t.Fatal(err)
	}
	z := enc.EncodeAll(raw, nil)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	if h := frameHeader(t, z); h.DictionaryID != id {
		t.Fatalf("frame names dictionary %d, want %d", h.DictionaryID, id)
	}
	if _, err := protocol.Decompress(z); !errors.Is(err, protocol.ErrUnknownDictionary) {
		t.Errorf("Decompress = %v, want ErrUnknownDictionary", err)
	}
	var got protocol.SyncRequest
	if err := protocol.ReadBody(z, protocol.EncodingZstd, &got); !errors.Is(err, protocol.ErrUnknownDictionary) {
		t.Errorf("ReadBody = %v, want ErrUnknownDictionary", err)
	}
}

func TestDecompressMalformed(t *testing.T) {
	raw, err := protocol.Marshal(largeRequest())
	if err != nil {
		t.Fatal(err)
	}
	z, err := protocol.CompressPlain(raw)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := bytes.Clone(z)
	for i := len(corrupt) / 2; i < len(corrupt)/2+8; i++ {
		corrupt[i] ^= 0xff
	}
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"text", []byte("this is not a zstd frame")},
		{"CBOR sent as zstd", raw},
		{"magic only", []byte{0x28, 0xb5, 0x2f, 0xfd}},
		{"truncated frame", z[:len(z)/2]},
		{"corrupt block", corrupt},
		{"reserved block type", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00, 0x07, 0x00, 0x00}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := protocol.Decompress(tc.body); !errors.Is(err, protocol.ErrMalformed) {
				t.Errorf("Decompress = %v, want ErrMalformed", err)
			}
			var got protocol.SyncRequest
			if err := protocol.ReadBody(tc.body, protocol.EncodingZstd, &got); !errors.Is(err, protocol.ErrMalformed) {
				t.Errorf("ReadBody = %v, want ErrMalformed", err)
			}
		})
	}
	// No frame at all decodes to nothing, which is no message.
	var got protocol.SyncRequest
	if err := protocol.ReadBody(nil, protocol.EncodingZstd, &got); !errors.Is(err, protocol.ErrMalformed) {
		t.Errorf("ReadBody(empty, zstd) = %v, want ErrMalformed", err)
	}
}

func TestDictionary(t *testing.T) {
	needDictionary(t)
	for _, v := range append(goldenVectors, goldenVector{"large", "", largeRequest()}) {
		raw, err := protocol.Marshal(v.value)
		if err != nil {
			t.Fatal(err)
		}
		z, err := protocol.Compress(raw)
		if err != nil {
			t.Fatal(err)
		}
		if h := frameHeader(t, z); h.DictionaryID != protocol.DictionaryID() {
			t.Errorf("%s: frame names dictionary %d, want %d", v.file, h.DictionaryID, protocol.DictionaryID())
		}
		out, err := protocol.Decompress(z)
		if err != nil {
			t.Fatalf("%s: %v", v.file, err)
		}
		if !bytes.Equal(out, raw) {
			t.Errorf("%s: round trip differs", v.file)
		}
		plain, err := protocol.CompressPlain(raw)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-32s raw %5d  plain zstd %5d  with dictionary %5d", v.file, len(raw), len(plain), len(z))
	}
}

func TestBodyLimits(t *testing.T) {
	t.Run("compressed body", func(t *testing.T) {
		big := make([]byte, protocol.MaxCompressedBody+1)
		for _, enc := range []string{"", protocol.EncodingZstd} {
			var got protocol.SyncRequest
			checkLimit(t, protocol.ReadBody(big, enc, &got), "MaxCompressedBody")
		}
		_, err := protocol.Decompress(big)
		checkLimit(t, err, "MaxCompressedBody")

		// At the bound the body is read (and found malformed: zeros are
		// a CBOR 0 followed by trailing bytes).
		var got protocol.SyncRequest
		err = protocol.ReadBody(big[:protocol.MaxCompressedBody], "", &got)
		if errors.Is(err, protocol.ErrLimit) || !errors.Is(err, protocol.ErrMalformed) {
			t.Errorf("body of exactly MaxCompressedBody: %v, want ErrMalformed", err)
		}
	})

	for _, declared := range []bool{true, false} {
		name := "decompressed body, size in header"
		if !declared {
			name = "decompressed body, streamed"
		}
		t.Run(name, func(t *testing.T) {
			if testing.Short() {
				t.Skip("inflates MaxDecompressedBody twice; skipped with -short")
			}
			out, err := protocol.Decompress(zeroFrame(t, protocol.MaxDecompressedBody, declared))
			if err != nil || len(out) != protocol.MaxDecompressedBody {
				t.Fatalf("frame of exactly MaxDecompressedBody: %d bytes, %v", len(out), err)
			}
			out, err = protocol.Decompress(zeroFrame(t, protocol.MaxDecompressedBody+1, declared))
			checkLimit(t, err, "MaxDecompressedBody")
			if out != nil {
				t.Errorf("refused frame returned %d bytes", len(out))
			}
		})
	}
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// zeroFrame compresses n zero bytes into one zstd frame with the streaming
// writer, never holding the n bytes. With declared, the frame header states
// the content size; without, the size is known only by decoding.
func zeroFrame(t *testing.T, n int64, declared bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	if declared {
		enc.ResetContentSize(&buf, n)
	} else {
		enc.Reset(&buf)
	}
	if _, err := io.Copy(enc, io.LimitReader(zeros{}, n)); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	h := frameHeader(t, buf.Bytes())
	if h.HasFCS != declared || declared && h.FrameContentSize != uint64(n) {
		t.Fatalf("frame header %+v: content size declared %v, want %v", h, h.HasFCS, declared)
	}
	// The window stays within what the decoder accepts, so it is the output
	// bound that must stop the bomb.
	if !h.SingleSegment && h.WindowSize > protocol.MaxDecompressedBody {
		t.Fatalf("window %d exceeds MaxDecompressedBody", h.WindowSize)
	}
	return buf.Bytes()
}

// allocated returns the bytes the process allocated while f ran.
func allocated(f func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestDecompressBomb(t *testing.T) {
	const bomb = 1 << 30
	// Initialize the decoder outside the measurement.
	if _, err := protocol.Decompress(zeroFrame(t, 1<<20, true)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		declared bool
		budget   uint64
	}{
		// The header gives the size away: refused before any output.
		{"size in header", true, 2*protocol.MaxDecompressedBody + 4<<20},
		// Without a size the frame is inflated up to the bound, into an
		// output Decompress preallocated from the block headers.
		{"streamed, no size in header", false, 2*protocol.MaxDecompressedBody + 4<<20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			z := zeroFrame(t, bomb, tc.declared)
			if len(z) > protocol.MaxCompressedBody {
				t.Fatalf("bomb is %d bytes compressed, over MaxCompressedBody", len(z))
			}
			var (
				out []byte
				err error
			)
			n := allocated(func() { out, err = protocol.Decompress(z) })
			checkLimit(t, err, "MaxDecompressedBody")
			if out != nil {
				t.Errorf("refused bomb returned %d bytes", len(out))
			}
			t.Logf("%d-byte frame of %d zeros: allocated %d KiB while refusing it", len(z), bomb, n>>10)
			if n > tc.budget {
				t.Errorf("Decompress allocated %d MiB refusing the bomb, budget %d MiB", n>>20, tc.budget>>20)
			}

			var got protocol.SyncRequest
			n = allocated(func() { err = protocol.ReadBody(z, protocol.EncodingZstd, &got) })
			checkLimit(t, err, "MaxDecompressedBody")
			if n > tc.budget {
				t.Errorf("ReadBody allocated %d MiB refusing the bomb, budget %d MiB", n>>20, tc.budget>>20)
			}
		})
	}
}

// TestDecompressCost: bodies that cost the decoder far more than their size.
// The body format, one frame, leaves no reason to accept them.
func TestDecompressCost(t *testing.T) {
	t.Run("concatenated frames", func(t *testing.T) {
		// DecodeAll reallocates its whole output for every frame that
		// declares its size: 16,000 frames of 10 bytes (160 KB) took about
		// 30 GiB of allocation and most of a minute.
		//
		// Magic, Single_Segment with a 1-byte content size of 255, then one
		// last RLE block of 255 zeros.
		frame := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x20, 0xff, 0xfb, 0x07, 0x00, 0x00}
		if out, err := protocol.Decompress(frame); err != nil || len(out) != 255 {
			t.Fatalf("one frame: %d bytes, %v", len(out), err)
		}
		const frames = 2000
		body := bytes.Repeat(frame, frames)
		var (
			out []byte
			err error
		)
		n := allocated(func() { out, err = protocol.Decompress(body) })
		switch {
		case err == nil && len(out) != frames*255:
			t.Errorf("decoded %d bytes, want %d", len(out), frames*255)
		case err != nil && !errors.Is(err, protocol.ErrMalformed):
			t.Errorf("Decompress = %v, want ErrMalformed (or success)", err)
		}
		if n > 8<<20 {
			t.Errorf("Decompress allocated %d MiB for a %d-byte body", n>>20, len(body))
		}
	})

	t.Run("declared size its blocks cannot hold", func(t *testing.T) {
		// 13 bytes declaring 32 MiB (Single_Segment, 4-byte content size)
		// with one RLE block of 1 byte: DecodeAll allocates the 32 MiB
		// before finding the frame short.
		body := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0x00, 0x00, 0x00, 0x02, 0x0b, 0x00, 0x00, 0x00}
		var err error
		n := allocated(func() { _, err = protocol.Decompress(body) })
		if !errors.Is(err, protocol.ErrMalformed) {
			t.Errorf("Decompress = %v, want ErrMalformed", err)
		}
		if n > 1<<20 {
			t.Errorf("Decompress allocated %d MiB for a %d-byte body", n>>20, len(body))
		}
	})
}

// An unproved body inflates to MaxUnprovedBody at most: a bomb is refused
// having allocated little more than that bound, and a body just under it,
// as the agent's own encoder writes it, inflates.
func TestInflateUnproved(t *testing.T) {
	if _, err := protocol.InflateLimit(zeroFrame(t, 1<<10, true), protocol.EncodingZstd, protocol.MaxUnprovedBody); err != nil {
		t.Fatal(err)
	}
	for _, declared := range []bool{true, false} {
		z := zeroFrame(t, 1<<30, declared)
		var err error
		n := allocated(func() { _, err = protocol.InflateLimit(z, protocol.EncodingZstd, protocol.MaxUnprovedBody) })
		checkLimit(t, err, "MaxUnprovedBody")
		t.Logf("unproved bomb (size declared %v): allocated %d KiB while refusing it", declared, n>>10)
		if n > 4*protocol.MaxUnprovedBody+1<<20 {
			t.Errorf("refusing an unproved bomb (size declared %v) allocated %d KiB", declared, n>>10)
		}
		if b := protocol.InflatedBound(z, protocol.EncodingZstd, protocol.MaxUnprovedBody); b > protocol.MaxUnprovedBody {
			t.Errorf("InflatedBound = %d over the unproved limit", b)
		}
	}
	// A real body just under the bound: snapshot-like CBOR from the encoder.
	raw := make([]byte, 0, protocol.MaxUnprovedBody)
	for i := 0; len(raw) < protocol.MaxUnprovedBody-64; i++ {
		raw = fmt.Appendf(raw, "container-%d nginx:1.%d running %x;", i, i%30, i*7919)
	}
	z, err := protocol.Compress(raw)
	if err != nil {
		t.Fatal(err)
	}
	out, err := protocol.InflateLimit(z, protocol.EncodingZstd, protocol.MaxUnprovedBody)
	if err != nil || !bytes.Equal(out, raw) {
		t.Fatalf("a %d-byte body under the unproved bound: %v", len(raw), err)
	}
	if b := protocol.InflatedBound(z, protocol.EncodingZstd, protocol.MaxUnprovedBody); b < len(raw) {
		t.Errorf("InflatedBound = %d, under the body's %d bytes", b, len(raw))
	}
	big := append(bytes.Clone(raw), raw...)
	z, _ = protocol.Compress(big)
	_, err = protocol.InflateLimit(z, protocol.EncodingZstd, protocol.MaxUnprovedBody)
	checkLimit(t, err, "MaxUnprovedBody")
	if out, err := protocol.InflateLimit(z, protocol.EncodingZstd, protocol.MaxDecompressedBody); err != nil || len(out) != len(big) {
		t.Fatalf("a proved %d-byte body: %v", len(big), err)
	}
	// Plain CBOR is bounded the same way.
	_, err = protocol.InflateLimit(big, "", protocol.MaxUnprovedBody)
	checkLimit(t, err, "MaxUnprovedBody")
}

func TestBodyProofHeader(t *testing.T) {
	tag := bytes.Repeat([]byte{0xab}, protocol.MACSize)
	env, got, err := protocol.ParseBodyProof(protocol.FormatBodyProof(7, tag))
	if err != nil || env != 7 || !bytes.Equal(got, tag) {
		t.Fatalf("round trip: %d %x %v", env, got, err)
	}
	for _, bad := range []string{"", "7", "0.q6urq6urq6urq6urq6urqw", "x.q6urq6urq6urq6urq6urqw", "7.q6ur", "7.!!!!"} {
		if _, _, err := protocol.ParseBodyProof(bad); !errors.Is(err, protocol.ErrMalformed) {
			t.Errorf("ParseBodyProof(%q) = %v, want malformed", bad, err)
		}
	}
	if a, b := protocol.BodyProofInput(7, []byte("x")), protocol.BodyProofInput(8, []byte("x")); bytes.Equal(a, b) {
		t.Error("a body proof does not cover the environment")
	}
}
