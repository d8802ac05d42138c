package jobs

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRingLog writes in chunks of several sizes around a 10-byte limit and
// checks the log is the tail of everything written, oldest byte first.
func TestRingLog(t *testing.T) {
	const limit = 10
	for _, tc := range []struct {
		name   string
		writes []string
	}{
		{"nothing", nil},
		{"short", []string{"abc"}},
		{"exactly full", []string{"0123456789"}},
		{"full in two", []string{"01234", "56789"}},
		{"wraps once", []string{"0123456", "789ab"}},
		{"wraps to the start", []string{"0123456789", "abcdefghij"}},
		{"one write past the limit", []string{"0123456789abcdefghijklm"}},
		{"big write after a wrap", []string{"0123", "456789abcdef", "ghijklmnopqrstuvwxyz"}},
		{"many small", strings.Split("the quick brown fox jumps over the lazy dog", "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w, err := newRingLog(dir, 1, limit)
			if err != nil {
				t.Fatal(err)
			}
			var all bytes.Buffer
			for _, s := range tc.writes {
				n, err := w.Write([]byte(s))
				if n != len(s) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", s, n, err)
				}
				all.WriteString(s)
			}
			path := filepath.Join(dir, "1.log")
			if err := w.finish(path); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want := all.Bytes()[max(all.Len()-limit, 0):]
			if !bytes.Equal(got, want) {
				t.Errorf("log %q, want %q", got, want)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("%d files left in the log dir, want the log only", len(ents))
			}
		})
	}
}
