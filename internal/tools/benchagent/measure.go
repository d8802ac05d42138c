package main

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"time"

	"outpost/internal/testenv"
)

// result is what one agent measured.
type result struct {
	mode        string
	idle, after medians
	deployPeak  int64
	peakHow     string // "*": VmHWM over the deploy; "~": highest sample
	helperPeak  int64  // the compose helper's peak, from the agent's log; 0 without a helper
	treePeak    int64  // the highest sampled sum of the agent's and its children's RSS
	deployTook  time.Duration
	hwm         int64    // the highest VmHWM seen over the whole run
	timeline    []string // RSS at each minute of the idle periods
}

// fastSample is the sampling period during a deploy, when VmHWM cannot be
// reset.
const fastSample = 10 * time.Millisecond

// measure runs one agent in mode through the idle, deploy and after periods.
func measure(h *harness, srv *server, o options, mode, agentBin, image string) result {
	r := result{mode: mode}
	name := "bench-" + mode
	body := map[string]any{"name": name, "mode": mode}
	if mode == "async" {
		body["frequencies"] = map[string]int{"ping": o.freq, "snapshot": o.freq, "command": o.freq}
	}
	var env struct {
		ID      uint64 `json:"id"`
		EdgeKey string `json:"edgeKey"`
	}
	srv.do(h, "POST", "/api/environments", body, &env)

	prefix := fmt.Sprintf("benchagent%d-", os.Getpid())
	project := prefix + name
	h.Cleanup(func() { removeProject(project) }) // after the agent stopped: cleanups run latest first
	agentEnv := []string{"EDGE=1", "EDGE_INSECURE_POLL=1", "EDGE_KEY=" + env.EdgeKey,
		"OUTPOST_DATA_DIR=" + h.TempDir(), "EDGE_STACK_PREFIX=" + prefix, "EDGE_HOST_ROOT=/"}
	if mode == "async" {
		agentEnv = append(agentEnv, "EDGE_ASYNC=1")
	}
	agent := testenv.Start(h, "agent "+mode, append(agentEnv, o.agentEnv...), agentBin)
	pid := agent.Cmd.Process.Pid
	testenv.Eventually(h, time.Minute, func() (bool, string) {
		var e struct {
			LastCheckIn int64 `json:"lastCheckIn"`
		}
		srv.do(h, "GET", fmt.Sprintf("/api/environments/%d", env.ID), nil, &e)
		return e.LastCheckIn > 0, fmt.Sprintf("the %s agent has not checked in", mode)
	})
	logf("%s agent (pid %d) checked in; idle for %v", mode, pid, o.idle)

	ss := idle(h, mode, pid, o.idle, o.sample)
	r.idle = medianSince(ss, o.idle-o.window)
	r.timeline = timeline(ss, "")
	r.hwm = ss[len(ss)-1].hwm
	if !o.deploy {
		return r
	}

	var group struct {
		ID uint64 `json:"id"`
	}
	srv.do(h, "POST", "/api/edge-groups", map[string]any{"name": name, "environmentIds": []uint64{env.ID}}, &group)
	r.peakHow = "*"
	if err := resetPeak(pid); err != nil {
		logf("%s: reset VmHWM: %v; sampling every %v instead", mode, err, fastSample)
		r.peakHow = "~"
	}
	stop, highest, tree := peakSampler(pid)
	logged := len(agent.Out.String())
	start := time.Now()
	var stack struct {
		ID uint64 `json:"id"`
	}
	srv.do(h, "POST", "/api/edge-stacks", map[string]any{"name": name, "edgeGroupIds": []uint64{group.ID},
		"composeFile": fmt.Sprintf("services:\n  idle:\n    image: %s\n    command: [\"sleep\", \"86400\"]\n", image)}, &stack)
	testenv.Eventually(h, o.deployWithin, func() (bool, string) {
		var v struct {
			Environments []struct {
				Env    uint64 `json:"environmentId"`
				Status string `json:"status"`
				Error  string `json:"error"`
			} `json:"environments"`
		}
		srv.do(h, "GET", fmt.Sprintf("/api/edge-stacks/%d/status", stack.ID), nil, &v)
		for _, e := range v.Environments {
			if e.Env == env.ID {
				return e.Status == "running", fmt.Sprintf("%s stack: %s %s", mode, e.Status, e.Error)
			}
		}
		return false, fmt.Sprintf("%s stack: no status yet", mode)
	})
	r.deployTook = time.Since(start)
	close(stop)
	r.deployPeak, r.treePeak = <-highest, <-tree
	r.helperPeak = helperPeak(agent.Out.String()[logged:])
	if r.peakHow == "*" {
		m, err := readMem(pid)
		if err != nil {
			h.Fatalf("%s agent: %v", mode, err)
		}
		r.deployPeak = max(r.deployPeak, m.hwm)
	}
	r.hwm = max(r.hwm, r.deployPeak)
	logf("%s stack running after %v, peak %s (helper %s, together %s); idle for %v", mode, r.deployTook.Round(100*time.Millisecond),
		mib(r.deployPeak), mib(r.helperPeak), mib(r.treePeak), o.after)
	if o.after == 0 {
		return r
	}
	ss = idle(h, mode, pid, o.after, o.sample)
	r.after = medianSince(ss, o.after-o.window)
	r.timeline = append(r.timeline, timeline(ss, "+")...)
	r.hwm = max(r.hwm, ss[len(ss)-1].hwm)
	return r
}

// idle samples pid every period for d and returns the samples, the first
// at 0.
func idle(h *harness, mode string, pid int, d, every time.Duration) []sample {
	var ss []sample
	start := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	nextLog := time.Minute
	for {
		at := time.Since(start)
		m, err := readMem(pid)
		if err != nil {
			h.Fatalf("%s agent: %v (did it exit?)", mode, err)
		}
		ss = append(ss, sample{at: at, mem: m})
		if at >= nextLog {
			logf("%s: %v idle, RSS %s (anon %s, file %s)", mode, nextLog, mib(m.rss), mib(m.anon), mib(m.file))
			nextLog += time.Minute
		}
		if at >= d {
			return ss
		}
		<-tick.C
	}
}

// peakSampler samples pid's RSS, and the sum of its and its children's,
// every fastSample until stop is closed, then sends the highest of each.
func peakSampler(pid int) (stop chan struct{}, highest, tree chan int64) {
	stop, highest, tree = make(chan struct{}), make(chan int64, 1), make(chan int64, 1)
	go func() {
		var hi, hiTree int64
		tick := time.NewTicker(fastSample)
		defer tick.Stop()
		for {
			if m, err := readMem(pid); err == nil {
				hi = max(hi, m.rss)
				sum := m.rss
				for _, c := range children(pid) {
					if cm, err := readMem(c); err == nil {
						sum += cm.rss
					}
				}
				hiTree = max(hiTree, sum)
			}
			select {
			case <-stop:
				highest <- hi
				tree <- hiTree
				return
			case <-tick.C:
			}
		}
	}()
	return stop, highest, tree
}

var helperDoneRE = regexp.MustCompile(`msg="compose helper done".* max_rss_kib=(\d+)`)

// helperPeak is the highest peak of the compose helper runs the agent
// logged in out, 0 without any.
func helperPeak(out string) int64 {
	var hi int64
	for _, m := range helperDoneRE.FindAllStringSubmatch(out, -1) {
		if kb, err := strconv.ParseInt(m[1], 10, 64); err == nil {
			hi = max(hi, kb<<10)
		}
	}
	return hi
}

// timeline is the RSS of the first sample at or after each whole minute,
// as "1m=45.2" (MiB), marked with prefix.
func timeline(ss []sample, prefix string) []string {
	var out []string
	next := time.Minute
	for _, s := range ss {
		if s.at >= next {
			out = append(out, fmt.Sprintf("%s%dm=%.1f", prefix, int(next/time.Minute), float64(s.rss)/(1<<20)))
			next += time.Minute
		}
	}
	return out
}
