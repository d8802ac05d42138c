// Command benchagent measures the edge agent's memory on this machine, the
// agent's footprint part of issue 13: the real outpost-server on loopback
// (temporary data dir) and, for each mode, a real outpost-agent on the local
// Docker engine, with its resident memory read from /proc/PID/status.
//
//	go run ./internal/tools/benchagent [-idle 10m] [-after 3m] [-modes async,standard] [-bin DIR] [-env K=V]...
//
// Per mode (the modes run side by side, each its own environment and agent):
//
//  1. create the environment through the API, start the agent, wait for its
//     first check-in;
//  2. idle for -idle, sampling VmRSS, RssAnon and RssFile every -sample; the
//     idle figure is the median of the samples of the last -window;
//  3. deploy an edge stack (one busybox service, the image imported from the
//     host's /bin/busybox as internal/testenv makes it: nothing is pulled)
//     and wait until the server reports it running; the agent's deploy peak
//     is the kernel's VmHWM, reset just before (/proc/PID/clear_refs), or
//     the highest sample when the reset is refused; the compose helper's is
//     its peak as the agent logs it ("compose helper done", max_rss_kib,
//     from getrusage); the two together are sampled every 10 ms (agent and
//     children);
//  4. idle again for -after, reported the same way ("after deploy").
//
// Without -bin it builds the binaries as the devices get them
// (testenv.GoBuild, CGO_ENABLED=0): outpost-server, outpost-agent and its
// compose helper outpost-compose. With -bin, a directory without
// outpost-compose is taken for an agent that runs Compose itself (before
// the helper existed), to measure it the same way. -env adds variables to the agents'
// environment, e.g. -env GOGC=50, to compare runtime settings.
package main

import (
	"cmp"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"outpost/internal/testenv"
)

type options struct {
	bin          string
	modes        []string
	idle, after  time.Duration
	window       time.Duration
	sample       time.Duration
	freq         int
	deploy       bool
	agentEnv     []string
	deployWithin time.Duration
}

type envFlag []string

func (e *envFlag) String() string { return strings.Join(*e, " ") }
func (e *envFlag) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("%q: want NAME=VALUE", v)
	}
	*e = append(*e, v)
	return nil
}

func main() {
	var o options
	var modes string
	var env envFlag
	flag.StringVar(&o.bin, "bin", "", "directory holding outpost-server and outpost-agent (default: build them into a temporary directory)")
	flag.StringVar(&modes, "modes", "async,standard", "agent modes to measure, side by side")
	flag.DurationVar(&o.idle, "idle", 10*time.Minute, "idle period after the first check-in")
	flag.DurationVar(&o.after, "after", 3*time.Minute, "idle period after the deploy (0 skips it)")
	flag.DurationVar(&o.window, "window", time.Minute, "the idle figures are the median of the samples of this last stretch of each idle period")
	flag.DurationVar(&o.sample, "sample", time.Second, "sampling period while idle")
	flag.IntVar(&o.freq, "freq", 10, "async ping, snapshot and command frequency, seconds (standard agents poll at the server's default, 5 s)")
	flag.BoolVar(&o.deploy, "deploy", true, "deploy an edge stack after the idle period and report its peak")
	flag.DurationVar(&o.deployWithin, "deploy-timeout", 3*time.Minute, "how long a deploy may take")
	flag.Var(&env, "env", "NAME=VALUE added to the agents' environment (repeatable)")
	flag.Parse()
	o.agentEnv = env
	for _, m := range strings.Split(modes, ",") {
		switch m = strings.TrimSpace(m); m {
		case "async", "standard":
			o.modes = append(o.modes, m)
		case "":
		default:
			fmt.Fprintf(os.Stderr, "benchagent: -modes: %q: want async or standard\n", m)
			os.Exit(2)
		}
	}
	if len(o.modes) == 0 || o.idle <= 0 || o.window <= 0 || o.sample <= 0 || o.after < 0 || o.freq < 1 {
		fmt.Fprintln(os.Stderr, "benchagent: want at least one mode, -idle, -window and -sample above 0, -after of 0 or more, -freq of 1 or more")
		os.Exit(2)
	}
	h := newHarness()
	ok := h.run(func() { bench(h, o) })
	h.close()
	if !ok {
		os.Exit(1)
	}
}

func bench(h *harness, o options) {
	serverBin, agentBin := binaries(h, o.bin)
	sizes := binarySizes(agentBin)
	image := busyboxImage(h)
	srv := startServer(h, serverBin)
	logf("server at %s; agent %s (%s)", srv.url, agentBin, sizes)

	results := make([]result, len(o.modes))
	var wg sync.WaitGroup
	for i, mode := range o.modes {
		wg.Go(func() {
			h.run(func() { results[i] = measure(h, srv, o, mode, agentBin, image) })
		})
	}
	wg.Wait()
	if h.Failed() {
		return
	}
	report(os.Stdout, o, results, sizes)
}

// binaries returns the paths of outpost-server and outpost-agent: in dir, or
// built into a temporary directory.
func binaries(h *harness, dir string) (server, agent string) {
	if dir == "" {
		dir = h.TempDir()
		for _, name := range []string{"outpost-server", "outpost-agent", "outpost-compose"} {
			start := time.Now()
			if out, err := testenv.GoBuild(filepath.Join(dir, name), "outpost/cmd/"+name); err != nil {
				h.Fatalf("build %s: %v\n%s", name, err, out)
			}
			logf("built %s in %v", name, time.Since(start).Round(time.Second))
		}
	}
	server, agent = filepath.Join(dir, "outpost-server"), filepath.Join(dir, "outpost-agent")
	for _, p := range []string{server, agent} {
		if _, err := os.Stat(p); err != nil {
			h.Fatalf("-bin %s: %v", dir, err)
		}
	}
	return server, agent
}

// binarySizes describes the size of the agent's binary and of its compose
// helper's, when there is one beside it.
func binarySizes(agent string) string {
	fi, err := os.Stat(agent)
	if err != nil {
		return err.Error()
	}
	out := fmt.Sprintf("outpost-agent %s", mib(fi.Size()))
	if fi, err := os.Stat(filepath.Join(filepath.Dir(agent), "outpost-compose")); err == nil {
		out += fmt.Sprintf(", outpost-compose %s", mib(fi.Size()))
	} else {
		out += ", no outpost-compose beside it"
	}
	return out
}

// report prints the table.
func report(w *os.File, o options, results []result, sizes string) {
	fmt.Fprintf(w, "\nagent memory, from /proc/PID/status (MiB = 2^20 bytes); idle: median of the samples of the last %v of each idle period\n", o.window)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "mode\tidle RSS\tanon\tfile\tafter deploy\tanon\tfile\tdeploy peak: agent\thelper\ttogether\tdeploy took\tagent peak since start\t\n")
	for _, r := range results {
		after := []string{"-", "-", "-"}
		if r.after.n > 0 {
			after = []string{mib(r.after.rss), mib(r.after.anon), mib(r.after.file)}
		}
		peak, helper, together, took := "-", "-", "-", "-"
		if r.deployTook > 0 {
			peak, took = mib(r.deployPeak)+r.peakHow, r.deployTook.Round(100*time.Millisecond).String()
			together = mib(r.treePeak) + "~"
			if r.helperPeak > 0 {
				helper = mib(r.helperPeak)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.mode,
			mib(r.idle.rss), mib(r.idle.anon), mib(r.idle.file), after[0], after[1], after[2],
			peak, helper, together, took, mib(r.hwm))
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "binaries: %s\n", sizes)
	fmt.Fprintf(w, "idle %v (since the first check-in)", o.idle)
	if o.deploy && o.after > 0 {
		fmt.Fprintf(w, ", then a deploy, then %v idle", o.after)
	}
	fmt.Fprintf(w, "; async frequencies %d s, standard poll 5 s", o.freq)
	if len(o.agentEnv) > 0 {
		fmt.Fprintf(w, "; agent environment %s", strings.Join(o.agentEnv, " "))
	}
	fmt.Fprintf(w, "\n")
	if o.deploy {
		fmt.Fprintf(w, "deploy peak: agent: * = the kernel's VmHWM over the deploy, ~ = the highest of samples every 10 ms (clear_refs refused);\n")
		fmt.Fprintf(w, "  helper: the compose helper's peak (getrusage), as the agent logs it; together: the highest sum of the agent's and its children's RSS, sampled every 10 ms\n")
	}
	for _, r := range results {
		fmt.Fprintf(w, "%s RSS by minute: %s\n", r.mode, cmp.Or(strings.Join(r.timeline, " "), "-"))
	}
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s benchagent: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
