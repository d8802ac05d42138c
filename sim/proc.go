package sim

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times: 100 on
// every Linux architecture Go supports (sysconf needs cgo).
const clockTicks = 100

// procStats is what /proc tells of a process.
type procStats struct {
	cpu float64 // user + system seconds
	rss int64   // bytes
}

// readProc reads pid's CPU seconds and resident memory.
func readProc(pid int) (procStats, error) {
	var ps procStats
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, err
	}
	// Fields after the command, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ps, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 22 {
		return ps, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseFloat(f[11], 64) // field 14
	stime, err2 := strconv.ParseFloat(f[12], 64) // field 15
	rssPages, err3 := strconv.ParseInt(f[21], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return ps, fmt.Errorf("/proc/%d/stat: unreadable times or RSS", pid)
	}
	ps.cpu = (utime + stime) / clockTicks
	ps.rss = rssPages * int64(os.Getpagesize())
	return ps, nil
}

// serverMetrics is what the simulator reads of the server's /metrics.
type serverMetrics struct {
	goroutines int
	// Store write transactions: how many, and their seconds in all.
	storeWrites   float64
	storeWriteSec float64
}

// readMetrics reads go_goroutines and outpost_store_write_seconds from a
// Prometheus endpoint.
func readMetrics(ctx context.Context, c *http.Client, url string) (serverMetrics, error) {
	var m serverMetrics
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return m, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	found := false
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		var dst *float64
		var g float64
		switch name {
		case "go_goroutines":
			dst, found = &g, true
		case "outpost_store_write_seconds_count":
			dst = &m.storeWrites
		case "outpost_store_write_seconds_sum":
			dst = &m.storeWriteSec
		default:
			continue
		}
		if *dst, err = strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil {
			return m, fmt.Errorf("%s: %s: %w", url, name, err)
		}
		if name == "go_goroutines" {
			m.goroutines = int(g)
		}
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if !found {
		return m, fmt.Errorf("%s: no go_goroutines", url)
	}
	return m, nil
}

// fileMargin is the files a process needs besides its device connections.
const fileMargin = 256

// fileLimit reads pid's soft open-file limit from /proc/PID/limits.
func fileLimit(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, err
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.ParseUint(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/limits: no open-file limit", pid)
}
