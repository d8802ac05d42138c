package server

import "testing"

func TestParseSizes(t *testing.T) {
	for in, want := range map[string]int64{"256MiB": 256 << 20, "2GiB": 2 << 30, "512 KB": 512 << 10, "1g": 1 << 30, "4096": 4096, "10B": 10} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1MiB", "lots", "1.5GiB", "99999999999GiB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
	if n, err := ParseMemoryLimit("off"); err != nil || n != MemoryLimitOff {
		t.Errorf("off: %d %v", n, err)
	}
	if n, err := ParseMemoryLimit("auto"); err != nil || n != MemoryLimitAuto {
		t.Errorf("auto: %d %v", n, err)
	}
	if machineMemory() <= 0 {
		t.Error("no MemTotal in /proc/meminfo")
	}
}
