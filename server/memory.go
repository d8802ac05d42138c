package server

import (
	"bufio"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Memory limit settings (Config.MemoryLimit) besides a size in bytes.
const (
	MemoryLimitAuto = 0  // half the machine's memory, unless GOMEMLIMIT is set
	MemoryLimitOff  = -1 // the runtime's own: none, or GOMEMLIMIT
)

// ParseSize reads a size in bytes: a number with an optional KiB, MiB or
// GiB suffix (KB, MB, GB and K, M, G mean the same: powers of 1024).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	up := strings.ToUpper(t)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(up, u.suffix) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, optionally with KiB, MiB or GiB", s)
	}
	return n * mult, nil
}

// ParseMemoryLimit reads --memory-limit: auto, off or a size.
func ParseMemoryLimit(s string) (int64, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "auto", "":
		return MemoryLimitAuto, nil
	case "off":
		return MemoryLimitOff, nil
	}
	return ParseSize(s)
}

// applyMemoryLimit sets the runtime's soft memory limit from limit, and
// returns what it set (0: left as it was).
func applyMemoryLimit(limit int64) int64 {
	switch {
	case limit == MemoryLimitOff:
		return 0
	case limit == MemoryLimitAuto:
		if os.Getenv("GOMEMLIMIT") != "" {
			return 0 // the operator's, already applied by the runtime
		}
		total := machineMemory()
		if total == 0 {
			return 0
		}
		limit = total / 2
	}
	debug.SetMemoryLimit(limit)
	return limit
}

// machineMemory is MemTotal from /proc/meminfo, 0 if unknown.
func machineMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
