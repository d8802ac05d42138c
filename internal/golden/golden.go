// Package golden reads and writes the project's wire vectors: one CBOR
// encoding per file, with its type, a description and CBOR's diagnostic
// notation on two comment lines, then the bytes in hex, 16 to a line.
package golden

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// File is a parsed golden file.
type File struct {
	TypeName string
	Desc     string
	Diag     string
	Data     []byte
}

// Format renders a vector: a type and description line, the diagnostic
// notation, then the bytes in hex, 16 per line.
func Format(typeName, desc string, data []byte) ([]byte, error) {
	diag, err := cbor.Diagnose(data)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s: %s\n# diag: %s\n", typeName, desc, diag)
	for i := 0; i < len(data); i += 16 {
		line := data[i:min(i+16, len(data))]
		for j, c := range line {
			if j > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%02x", c)
		}
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// Parse reads a file Format wrote.
func Parse(text []byte) (File, error) {
	var g File
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(nil, 1<<20)
	var hexText strings.Builder
	for n := 0; sc.Scan(); n++ {
		line := sc.Text()
		switch n {
		case 0:
			head, ok := strings.CutPrefix(line, "# ")
			name, desc, ok2 := strings.Cut(head, ": ")
			if !ok || !ok2 || name == "" {
				return g, fmt.Errorf("line 1 must be %q, got %q", "# <TypeName>: <description>", line)
			}
			g.TypeName, g.Desc = name, desc
		case 1:
			diag, ok := strings.CutPrefix(line, "# diag: ")
			if !ok {
				return g, fmt.Errorf("line 2 must be %q, got %q", "# diag: <diagnostic notation>", line)
			}
			g.Diag = diag
		default:
			if strings.HasPrefix(line, "#") {
				return g, fmt.Errorf("line %d: comments only on lines 1 and 2", n+1)
			}
			for _, f := range strings.Fields(line) {
				if len(f) != 2 {
					return g, fmt.Errorf("line %d: %q is not one byte in hex", n+1, f)
				}
				hexText.WriteString(f)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return g, err
	}
	if g.Diag == "" {
		return g, errors.New("missing the type and diag lines")
	}
	var err error
	if g.Data, err = hex.DecodeString(hexText.String()); err != nil {
		return g, fmt.Errorf("hex: %w", err)
	}
	if len(g.Data) == 0 {
		return g, errors.New("no bytes")
	}
	return g, nil
}

// ReadDir returns every .golden file of dir by base name.
func ReadDir(tb testing.TB, dir string) map[string]File {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.golden"))
	if err != nil {
		tb.Fatal(err)
	}
	out := make(map[string]File, len(paths))
	for _, p := range paths {
		text, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		g, err := Parse(text)
		if err != nil {
			tb.Fatalf("%s: %v", p, err)
		}
		out[strings.TrimSuffix(filepath.Base(p), ".golden")] = g
	}
	return out
}
