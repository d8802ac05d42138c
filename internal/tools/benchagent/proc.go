package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// mem is one reading of /proc/PID/status, in bytes.
type mem struct {
	rss, anon, file, hwm int64
}

// readMem reads VmRSS, RssAnon, RssFile and VmHWM (the peak of VmRSS since
// the start or the last clear_refs) of process pid.
func readMem(pid int) (mem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return mem{}, err
	}
	var m mem
	fields := map[string]*int64{"VmRSS:": &m.rss, "RssAnon:": &m.anon, "RssFile:": &m.file, "VmHWM:": &m.hwm}
	sc := bufio.NewScanner(bytes.NewReader(b))
	found := 0
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) != 3 || string(f[2]) != "kB" {
			continue
		}
		if p := fields[string(f[0])]; p != nil {
			kb, err := strconv.ParseInt(string(f[1]), 10, 64)
			if err != nil {
				return mem{}, fmt.Errorf("/proc/%d/status: %s: %w", pid, f[0], err)
			}
			*p = kb << 10
			found++
		}
	}
	if found != len(fields) {
		return mem{}, fmt.Errorf("/proc/%d/status: found %d of VmRSS, RssAnon, RssFile, VmHWM", pid, found)
	}
	return m, nil
}

// children returns the PIDs of pid's children. /proc/PID/task/TID/children
// lists those one thread started (Linux 3.5 and later), so every thread's
// list is read.
func children(pid int) []int {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// resetPeak makes the kernel start VmHWM afresh from the current RSS
// (clear_refs 5, Linux 4.0 and later; the process's owner or root).
func resetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// sample is a reading at a time since the start of a period.
type sample struct {
	at time.Duration
	mem
}

// medians is the median of each field over some samples.
type medians struct {
	n               int
	rss, anon, file int64
}

// medianSince is the median of each field over the samples taken at or
// after from.
func medianSince(ss []sample, from time.Duration) medians {
	var rss, anon, file []int64
	for _, s := range ss {
		if s.at >= from {
			rss, anon, file = append(rss, s.rss), append(anon, s.anon), append(file, s.file)
		}
	}
	return medians{n: len(rss), rss: median(rss), anon: median(anon), file: median(file)}
}

func median(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
