package protocol

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// TestFrameVectors pins the frame encoding: each vector is the hex of a
// frame, commented, and must decode to its Frame and encode back the same.
func TestFrameVectors(t *testing.T) {
	for _, tc := range []struct {
		name string
		hex  string
		f    Frame
	}{
		// size 4, head 0x01 (sync), body a1 01 01
		{"sync request", "04 01 a10101", Frame{Path: SyncPath, Body: []byte{0xa1, 0x01, 0x01}}},
		// size 3, head 0x0e (poll, zstd, close), body 28b5
		{"poll request, zstd, last", "03 0e 28b5", Frame{Path: PollPath, Encoding: EncodingZstd, Close: true, Body: []byte{0x28, 0xb5}}},
		// size 2, head 0x00 (answer, 200), body a0
		{"answer", "02 00 a0", Frame{Status: 200, Body: []byte{0xa0}}},
		// size 4, head 0x18 (status follows, close), status 429 (ad 03), body a0
		{"refusal", "04 18 ad03 a0", Frame{Status: 429, Close: true, Body: []byte{0xa0}}},
		// size 6, head 0x21 (sync, proof follows), proof "7.x" (03 372e78), body a0
		{"request with body proof", "06 21 03372e78 a0", Frame{Path: SyncPath, Proof: "7.x", Body: []byte{0xa0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := hex.DecodeString(strings.ReplaceAll(tc.hex, " ", ""))
			if err != nil {
				t.Fatal(err)
			}
			got, err := AppendFrame(nil, &tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("encoded %x, want %x", got, want)
			}
			f, err := ReadFrame(bufio.NewReader(bytes.NewReader(want)))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(f, tc.f) {
				t.Errorf("decoded %+v, want %+v", f, tc.f)
			}
		})
	}
}

// TestFrameMalformed: every broken frame is ErrFrame (or a plain EOF
// between frames), never a panic or a huge allocation.
func TestFrameMalformed(t *testing.T) {
	for _, tc := range []struct {
		name string
		hex  string
		eof  bool
	}{
		{"nothing: the peer closed", "", true},
		{"size zero", "00", false},
		{"size past MaxFrame", "ffffffff0f", false},
		{"truncated head", "05", false},
		{"unknown flag", "01 40", false},
		{"path 3", "01 03", false},
		{"status out of range", "03 10 e807", false},
		{"status past the frame", "01 10", false},
		{"status in a request", "03 11 c801", false},
		{"proof in an answer", "03 20 01 61", false},
		{"proof past the frame", "03 21 05 61", false},
		{"truncated body", "05 01 a1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := hex.DecodeString(strings.ReplaceAll(tc.hex, " ", ""))
			if err != nil {
				t.Fatal(err)
			}
			_, err = ReadFrame(bufio.NewReader(bytes.NewReader(b)))
			switch {
			case tc.eof && !errors.Is(err, io.EOF):
				t.Errorf("got %v, want io.EOF", err)
			case !tc.eof && !errors.Is(err, ErrFrame):
				t.Errorf("got %v, want ErrFrame", err)
			}
		})
	}
	if _, err := AppendFrame(nil, &Frame{Path: "/api/auth"}); !errors.Is(err, ErrFrame) {
		t.Errorf("a path other than the edge endpoints: %v, want ErrFrame", err)
	}
	if _, err := AppendFrame(nil, &Frame{Encoding: "gzip"}); !errors.Is(err, ErrFrame) {
		t.Errorf("encoding gzip: %v, want ErrFrame", err)
	}
}

// FuzzReadFrame: whatever arrives, a frame read back encodes to the same
// frame.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0x04, 0x01, 0xa1, 0x01, 0x01})
	f.Add([]byte{0x06, 0x21, 0x03, 0x37, 0x2e, 0x78, 0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ReadFrame(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return
		}
		enc, err := AppendFrame(nil, &fr)
		if err != nil {
			t.Fatalf("%+v read but does not encode: %v", fr, err)
		}
		back, err := ReadFrame(bufio.NewReader(bytes.NewReader(enc)))
		if err != nil || !reflect.DeepEqual(back, fr) {
			t.Fatalf("%+v encodes to %x, which reads as %+v (%v)", fr, enc, back, err)
		}
	})
}
