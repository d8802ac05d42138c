package protocol_test

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"outpost/protocol"
)

func TestUnknownKeysIgnored(t *testing.T) {
	// A newer peer adds key 99 at the top level and inside a nested struct.
	b, err := protocol.Marshal(map[int]any{
		1:  1,
		3:  7,
		4:  map[int]any{2: 5, 99: "future"},
		5:  1,
		99: map[string]any{"new": []any{1, "two", []byte{3}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got protocol.SyncRequest
	if err := protocol.Unmarshal(b, &got); err != nil {
		t.Fatalf("decode with unknown keys: %v", err)
	}
	want := protocol.SyncRequest{Version: 1, EnvID: 7, Proof: &protocol.Proof{Counter: 5}, Include: protocol.IncludePing}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}

	// Through ReadBody too, plain and compressed.
	for _, enc := range []string{"", protocol.EncodingZstd} {
		body := b
		if enc != "" {
			if body, err = protocol.CompressPlain(b); err != nil {
				t.Fatal(err)
			}
		}
		var got protocol.SyncRequest
		if err := protocol.ReadBody(body, enc, &got); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ReadBody(%q) = %+v, %v", enc, got, err)
		}
	}
}

func TestCheckVersion(t *testing.T) {
	if err := protocol.CheckVersion(protocol.Version); err != nil {
		t.Errorf("CheckVersion(Version) = %v", err)
	}
	if err := protocol.CheckVersion(protocol.MinVersion); err != nil {
		t.Errorf("CheckVersion(MinVersion) = %v", err)
	}
	for _, v := range []uint{0, protocol.Version + 1, 1 << 20} {
		err := protocol.CheckVersion(v)
		if !errors.Is(err, protocol.ErrUnsupportedVersion) {
			t.Errorf("CheckVersion(%d) = %v, want ErrUnsupportedVersion", v, err)
			continue
		}
		var ve *protocol.VersionError
		if !errors.As(err, &ve) || ve.Got != v {
			t.Errorf("CheckVersion(%d) = %#v, want *VersionError{Got: %d}", v, err, v)
		}
		msg := err.Error()
		for _, s := range []string{
			fmt.Sprintf("version %d ", v),
			fmt.Sprintf("%d to %d", protocol.MinVersion, protocol.Version),
			"upgrade",
		} {
			if !strings.Contains(msg, s) {
				t.Errorf("CheckVersion(%d) message %q does not mention %q", v, msg, s)
			}
		}
		if errors.Is(err, protocol.ErrMalformed) || errors.Is(err, protocol.ErrLimit) {
			t.Errorf("CheckVersion(%d) matches another sentinel: %v", v, err)
		}
	}
}

// TestDecodeRejects covers CBOR the decoder must refuse as malformed.
func TestDecodeRejects(t *testing.T) {
	idle := []byte{0xa3, 0x01, 0x01, 0x03, 0x07, 0x05, 0x01}
	for _, tc := range []struct {
		name string
		data []byte
		into any // nil: a SyncRequest
	}{
		{"duplicate known key", []byte{0xa3, 0x01, 0x01, 0x03, 0x07, 0x01, 0x01}, nil},
		{"duplicate known key, different values", []byte{0xa2, 0x03, 0x07, 0x03, 0x08}, nil},
		{"duplicate unknown key", []byte{0xa3, 0x01, 0x01, 0x18, 0x63, 0x00, 0x18, 0x63, 0x01}, nil},
		{"duplicate key in nested struct", []byte{0xa2, 0x01, 0x01, 0x04, 0xa2, 0x02, 0x01, 0x02, 0x02}, nil},
		{"duplicate key in string map", hexBytes("a2 01 01 06 81 a3 01 01 02 61 6b 03 a2 61 61 61 31 61 61 61 32"), &protocol.SyncAnswer{}},
		{"indefinite-length map", []byte{0xbf, 0x01, 0x01, 0x03, 0x07, 0xff}, nil},
		{"indefinite-length array", []byte{0xa2, 0x01, 0x01, 0x08, 0x9f, 0xa1, 0x01, 0x01, 0xff}, nil},
		{"indefinite-length text", []byte{0xa2, 0x01, 0x01, 0x02, 0x7f, 0x61, 0x61, 0xff}, nil},
		{"indefinite-length bytes", []byte{0xa2, 0x01, 0x01, 0x04, 0xa1, 0x01, 0x5f, 0x41, 0x00, 0xff}, nil},
		{"indefinite-length map in an unknown key", []byte{0xa2, 0x01, 0x01, 0x18, 0x63, 0xbf, 0xff}, nil},
		{"trailing byte", append(bytes.Clone(idle), 0x00), nil},
		{"second item", append(bytes.Clone(idle), idle...), nil},
		{"truncated", idle[:len(idle)-1], nil},
		{"empty", nil, nil},
		{"invalid UTF-8 text", []byte{0xa2, 0x01, 0x01, 0x02, 0x62, 0xc3, 0x28}, nil},
		{"wrong type", []byte{0xa2, 0x01, 0x61, 0x31, 0x03, 0x07}, nil},
		{"negative uint", []byte{0xa2, 0x01, 0x01, 0x03, 0x20}, nil},
		{"not a map", []byte{0x83, 0x01, 0x02, 0x03}, nil},
		{"reserved additional info", []byte{0xa1, 0x01, 0x1c}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.into
			if v == nil {
				v = &protocol.SyncRequest{}
			}
			err := protocol.Unmarshal(tc.data, v)
			if !errors.Is(err, protocol.ErrMalformed) {
				t.Fatalf("Unmarshal(%x) = %v, want ErrMalformed", tc.data, err)
			}
			if errors.Is(err, protocol.ErrLimit) {
				t.Errorf("malformed input reported as a limit: %v", err)
			}
			if err := protocol.ReadBody(tc.data, "", v); !errors.Is(err, protocol.ErrMalformed) {
				t.Errorf("ReadBody = %v, want ErrMalformed", err)
			}
		})
	}
	var v protocol.SyncRequest
	if err := protocol.Unmarshal(idle, &v); err != nil {
		t.Fatalf("the valid base of these cases does not decode: %v", err)
	}
}

func TestFrequenciesTakeNewFields(t *testing.T) {
	// Frequencies are a map like every message: a field a later version adds
	// (key 4 here) is ignored, the known ones still decode.
	var f protocol.Frequencies
	if err := protocol.Unmarshal([]byte{0xa4, 0x01, 0x05, 0x02, 0x0a, 0x03, 0x0f, 0x04, 0x18, 0x63}, &f); err != nil {
		t.Fatal(err)
	}
	if f != (protocol.Frequencies{Ping: 5, Snapshot: 10, Command: 15}) {
		t.Fatalf("decoded %+v", f)
	}
}

// nested returns depth levels of one-element arrays around 0.
func nested(depth int) []byte {
	return append(bytes.Repeat([]byte{0x81}, depth), 0x00)
}

// withUnknownKey wraps item as key 99 of a SyncRequest, where the decoder
// skips it: limits must hold for skipped items too.
func withUnknownKey(item []byte) []byte {
	return append([]byte{0xa2, 0x01, 0x01, 0x18, 0x63}, item...)
}

// cborHead encodes a CBOR head of major type major with argument n.
func cborHead(major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return []byte{m | byte(n)}
	case n <= 0xff:
		return []byte{m | 24, byte(n)}
	case n <= 0xffff:
		return []byte{m | 25, byte(n >> 8), byte(n)}
	case n <= 0xffffffff:
		return []byte{m | 26, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
	return []byte{m | 27, byte(n >> 56), byte(n >> 48), byte(n >> 40), byte(n >> 32), byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

// array returns an array of n zeros.
func array(n int) []byte {
	return append(cborHead(4, uint64(n)), make([]byte, n)...)
}

// intMap returns a map of n distinct uint keys, each to 0.
func intMap(n int) []byte {
	b := cborHead(5, uint64(n))
	for i := range n {
		b = append(b, cborHead(0, uint64(i))...)
		b = append(b, 0x00)
	}
	return b
}

func TestLimits(t *testing.T) {
	// The top-level map counts as one level.
	for _, tc := range []struct {
		name  string
		data  []byte
		limit string // "" = must decode
	}{
		{"nesting at the bound", withUnknownKey(nested(protocol.MaxNestingDepth - 1)), ""},
		{"nesting past the bound", withUnknownKey(nested(protocol.MaxNestingDepth)), "MaxNestingDepth"},
		{"nesting far past the bound", withUnknownKey(nested(10_000)), "MaxNestingDepth"},
		{"nesting through known fields", hexBytes("a2 01 01 08 81 a2 01 01 18 63" + strings.Repeat(" 81", protocol.MaxNestingDepth) + " 00"), "MaxNestingDepth"},
		{"array at the bound", withUnknownKey(array(protocol.MaxArrayElements)), ""},
		{"array past the bound", withUnknownKey(array(protocol.MaxArrayElements + 1)), "MaxArrayElements"},
		{"array header claiming 2^32 elements", withUnknownKey(cborHead(4, 1<<32)), "MaxArrayElements"},
		{"array of acks past the bound", append([]byte{0xa2, 0x01, 0x01, 0x08}, array(protocol.MaxArrayElements+1)...), "MaxArrayElements"},
		{"map at the bound", withUnknownKey(intMap(protocol.MaxMapPairs)), ""},
		{"map past the bound", withUnknownKey(intMap(protocol.MaxMapPairs + 1)), "MaxMapPairs"},
		{"top-level map past the bound", intMap(protocol.MaxMapPairs + 1), "MaxMapPairs"},
		{"map header claiming 2^32 pairs", withUnknownKey(cborHead(5, 1<<32)), "MaxMapPairs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v protocol.SyncRequest
			err := protocol.Unmarshal(tc.data, &v)
			if tc.limit == "" {
				if err != nil {
					t.Fatalf("within bounds, got %v", err)
				}
				return
			}
			checkLimit(t, err, tc.limit)
			checkLimit(t, protocol.ReadBody(tc.data, "", &v), tc.limit)
		})
	}
}

// checkLimit requires err to be a *LimitError for limit that matches ErrLimit.
func checkLimit(t *testing.T, err error, limit string) {
	t.Helper()
	var le *protocol.LimitError
	if !errors.As(err, &le) {
		t.Fatalf("got %v, want a *LimitError for %s", err, limit)
	}
	if le.Limit != limit {
		t.Errorf("LimitError.Limit = %q, want %q", le.Limit, limit)
	}
	if !errors.Is(err, protocol.ErrLimit) {
		t.Errorf("%v does not match ErrLimit", err)
	}
	if errors.Is(err, protocol.ErrMalformed) {
		t.Errorf("%v also matches ErrMalformed", err)
	}
	if !strings.Contains(err.Error(), limit) {
		t.Errorf("message %q does not name %s", err, limit)
	}
}

func TestErrorMessage(t *testing.T) {
	e := &protocol.Error{Version: protocol.Version, Code: protocol.CodeLimit, Message: "body too large"}
	var err error = e
	if got := err.Error(); !strings.Contains(got, protocol.CodeLimit) || !strings.Contains(got, "body too large") {
		t.Errorf("Error() = %q", got)
	}
}

func hexBytes(s string) []byte {
	var b []byte
	for _, f := range strings.Fields(s) {
		var c byte
		if _, err := fmt.Sscanf(f, "%02x", &c); err != nil || len(f) != 2 {
			panic("bad hex " + f)
		}
		b = append(b, c)
	}
	return b
}
