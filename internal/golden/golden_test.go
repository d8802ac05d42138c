package golden

import (
	"bytes"
	"testing"
)

// TestParse checks the file reader itself, so a broken file cannot pass
// by being misread.
func TestParse(t *testing.T) {
	good := "# SyncRequest: idle ping\n# diag: {1: 1, 3: 7, 5: 1}\na3 01 01\n03 07 05 01\n"
	g, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if g.TypeName != "SyncRequest" || g.Desc != "idle ping" || g.Diag != "{1: 1, 3: 7, 5: 1}" ||
		!bytes.Equal(g.Data, []byte{0xa3, 0x01, 0x01, 0x03, 0x07, 0x05, 0x01}) {
		t.Errorf("parsed %+v", g)
	}
	for _, bad := range []string{
		"",
		"SyncRequest: x\n# diag: 1\n01\n",
		"# SyncRequest\n# diag: 1\n01\n",
		"# SyncRequest: x\n01\n",
		"# SyncRequest: x\n# diag: 1\n",
		"# SyncRequest: x\n# diag: 1\n0g\n",
		"# SyncRequest: x\n# diag: 1\n0 1\n",
		"# SyncRequest: x\n# diag: 1\n# more\n01\n",
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) = nil error", bad)
		}
	}
}
