package sim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"outpost/internal/corpus"
	"outpost/protocol"
	"outpost/scheduler"
	"outpost/snapshot"
)

// Run stages cfg's fleet on the server, runs it for cfg.Duration and then
// cfg.Grace (commands, tunnel requests and the stack's creation stop at
// Duration; the grace ends early once nothing is owed: every command
// acked, the stack running on every device of its group), and writes the
// report files. It returns the report even when writing one failed.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	// A device is a socket, and so is a tunnel.
	limit, err := raiseFileLimit()
	if err != nil {
		return nil, fmt.Errorf("raise the open-file limit: %w", err)
	}
	if need := uint64(cfg.files() + fileMargin); limit != 0 && limit < need {
		return nil, fmt.Errorf("devices %d, standard %d, tunnels %d: the open-file limit is %d, they need %d; raise the hard limit (ulimit -Hn, LimitNOFILE) or simulate fewer",
			cfg.Devices, cfg.Standard, cfg.Tunnels, limit, need)
	}
	var warnings []string
	if cfg.ServerPID != 0 {
		if n, err := fileLimit(cfg.ServerPID); err == nil && n < uint64(cfg.files()+fileMargin) {
			w := fmt.Sprintf("the server's open-file limit is %d: it cannot hold %d device and tunnel connections and its own files; expect refused connections", n, cfg.files())
			warnings = append(warnings, w)
			fmt.Fprintf(cfg.Progress, "warning: %s\n", w)
		}
	}
	capture, err := loadCapture(cfg.Testdata, cfg.Capture)
	if err != nil {
		return nil, err
	}
	a := newAPI(cfg.Server)
	defer a.http.CloseIdleConnections()
	if err := a.login(ctx, cfg.User, cfg.Password); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "staging %d async and %d standard environments...\n", cfg.Devices, cfg.Standard)
	var envs []staged
	for _, m := range []struct {
		name, mode string
		n          int
		standard   bool
	}{{cfg.Name, "async", cfg.Devices, false}, {cfg.Name + "-std", "standard", cfg.Standard, true}} {
		if m.n == 0 {
			continue
		}
		es, err := a.stage(ctx, m.name, m.mode, m.n, cfg.freq(m.standard))
		if err != nil {
			return nil, err
		}
		envs = append(envs, es...)
	}
	rec := newRecorder()
	start := time.Now()
	total := cfg.Devices + cfg.Standard
	addrs := (total + PerAddress - 1) / PerAddress
	devs := make([]*device, len(envs))
	for i, e := range envs {
		k, err := protocol.ParseEdgeKey(e.EdgeKey)
		if err != nil {
			return nil, fmt.Errorf("environment %d: edge key: %w", e.ID, err)
		}
		src := net.IPv4(127, 0, 0, byte(1+i/PerAddress))
		if devs[i], err = newDevice(i+1, i >= cfg.Devices, k, cfg.Server, src, capture, cfg, rec, start); err != nil {
			return nil, fmt.Errorf("device %d: %w", i+1, err)
		}
	}
	standard := devs[cfg.Devices:]
	r := &Report{Started: start, Devices: cfg.Devices, Standard: cfg.Standard, SourceAddrs: addrs, FreqSeconds: cfg.Freq, PollSeconds: cfg.PollFreq,
		CommandsPerSec: cfg.CommandsPerSec, ChangesPerHour: cfg.ChangesPerHour, Capture: cfg.Capture, Containers: len(capture.Containers),
		Server: ServerStats{PID: cfg.ServerPID}, Warnings: warnings}
	if cfg.Tunnels > 0 {
		r.Tunnels = &Tunnels{Tunnels: cfg.Tunnels, Busy: cmp.Or(cfg.BusyTunnels, cfg.Tunnels), RequestsPerSec: cfg.TunnelRequestsPerSec}
	}
	if cfg.StackGroup > 0 {
		r.Stack = &Stack{GroupSize: cfg.StackGroup}
	}

	devCtx, stopDevices := context.WithCancel(ctx)
	defer stopDevices()
	var wg sync.WaitGroup
	rnd := mrand.New(mrand.NewPCG(cfg.Seed, 0))
	for _, d := range devs {
		at := start.Add(time.Duration(rnd.Int64N(int64(cfg.Ramp) + 1)))
		wg.Go(func() { d.run(devCtx, at) })
	}
	smp := newSampler(cfg, rec, start)
	defer smp.http.CloseIdleConnections()
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var sampling sync.WaitGroup
	sampling.Go(func() { smp.loop(sampleCtx) })

	// What the operator does, for Duration: commands, tunnels and the
	// requests through them, the edge stack.
	cmdCtx, stopCommands := context.WithTimeout(ctx, cfg.Duration)
	var ops sync.WaitGroup
	ops.Go(func() { queueCommands(cmdCtx, cfg, a, devs, rec, rnd) })
	ops.Go(func() { listEnvironments(cmdCtx, a, rec) })
	if cfg.Tunnels > 0 {
		tunnels := standard[:cfg.Tunnels]
		ops.Go(func() { openTunnels(cmdCtx, a, tunnels, rec) })
		busy := tunnels
		if cfg.BusyTunnels > 0 {
			busy = tunnels[:cfg.BusyTunnels]
		}
		trnd := mrand.New(mrand.NewPCG(cfg.Seed, 1<<63))
		ops.Go(func() { tunnelTraffic(cmdCtx, cfg.TunnelRequestsPerSec, a, busy, rec, trnd) })
	}
	if cfg.StackGroup > 0 {
		ops.Go(func() { deployStack(cmdCtx, cfg, a, devs, rec) })
	}
	<-cmdCtx.Done()
	ops.Wait()
	stopCommands()
	// Grace: the last commands' acks, the stack's last reports.
	deadline := time.Now().Add(cfg.Grace)
	for !rec.settled() && time.Now().Before(deadline) && ctx.Err() == nil {
		scheduler.Wait(ctx, time.Now().Add(200*time.Millisecond))
	}
	stopSampling()
	sampling.Wait()
	smp.sample(context.Background()) // the last figures, the fleet still up
	r.Seconds = time.Since(start).Seconds()
	stopDevices()
	wg.Wait()
	r.Samples = smp.samples
	r.Server = smp.server(r.Seconds)
	if ps, err := readProc(os.Getpid()); err == nil {
		r.Simulator = ProcessStats{CPUSeconds: round3(ps.cpu), RSSBytes: ps.rss}
	}
	r.fill(rec)
	fmt.Fprintf(cfg.Progress, "%s\n", r.summary())
	if cfg.JSON != "" {
		if err := r.writeJSON(cfg.JSON); err != nil {
			return r, fmt.Errorf("write %s: %w", cfg.JSON, err)
		}
	}
	if cfg.HTML != "" {
		if err := r.writeHTML(cfg.HTML); err != nil {
			return r, fmt.Errorf("write %s: %w", cfg.HTML, err)
		}
	}
	return r, nil
}

func loadCapture(dir, name string) (*snapshot.Snapshot, error) {
	caps, err := corpus.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("captures: %w", err)
	}
	for _, c := range caps {
		if c.Name == filepath.Base(name) {
			return c.Docker, nil
		}
	}
	return nil, fmt.Errorf("capture %s: not among the captures in %s", name, dir)
}

// queueCommands queues commands at cfg.CommandsPerSec on random devices
// of either mode (one that has checked in, when it finds one in a few
// draws) until ctx ends.
func queueCommands(ctx context.Context, cfg Config, a *api, devs []*device, rec *recorder, rnd *mrand.Rand) {
	pace(ctx, cfg.CommandsPerSec, 8, func() func() {
		d := devs[rnd.IntN(len(devs))]
		for range 4 {
			if rec.isUp(d.n) {
				break
			}
			d = devs[rnd.IntN(len(devs))]
		}
		container := d.ids[rnd.IntN(len(d.ids))]
		return func() {
			at := time.Now()
			id, err := a.queue(context.WithoutCancel(ctx), d.env, container)
			if err != nil {
				rec.fail("command_queue", err)
				return
			}
			rec.commandQueued(id, at)
		}
	}, func() {
		rec.fail("command_queue_behind", fmt.Errorf("every command worker busy at %v/s", cfg.CommandsPerSec))
	})
}

// ListEvery is how often the simulator asks for the environments list,
// as an operator watching the fleet would.
const ListEvery = 2 * time.Second

// listEnvironments asks for the first page of the environments list by
// name every ListEvery until ctx ends: issue 13 bounds it at 50 ms with
// 100,000 environments, under the fleet's load.
func listEnvironments(ctx context.Context, a *api, rec *recorder) {
	pace(ctx, 1/ListEvery.Seconds(), 1, func() func() {
		return func() {
			start := time.Now()
			var page struct {
				Total int `json:"total"`
			}
			if err := a.call(context.WithoutCancel(ctx), http.MethodGet, "/api/environments?sort=name&limit=100", nil, &page, http.StatusOK); err != nil {
				rec.fail("environments_list", err)
				return
			}
			rec.listed(time.Since(start))
		}
	}, func() {
		rec.fail("environments_list_behind", errors.New("the environments list is slower than one every "+ListEvery.String()))
	})
}

// sampler takes the progress samples and prints the progress line.
type sampler struct {
	cfg     Config
	rec     *recorder
	start   time.Time
	last    time.Time
	http    *http.Client
	samples []Sample
	// cpu0 is the server's CPU seconds at start.
	cpu0    float64
	cpuOK   bool
	rssMax  int64
	goMax   int
	lastCPU float64
	// lastMetrics is the previous read of the server's metrics.
	lastMetrics serverMetrics
	metricsOK   bool
}

func newSampler(cfg Config, rec *recorder, start time.Time) *sampler {
	s := &sampler{cfg: cfg, rec: rec, start: start, last: start, http: &http.Client{Timeout: 2 * time.Second}}
	if cfg.ServerPID != 0 {
		if ps, err := readProc(cfg.ServerPID); err == nil {
			s.cpu0, s.lastCPU, s.cpuOK = ps.cpu, ps.cpu, true
		}
	}
	return s
}

func (s *sampler) loop(ctx context.Context) {
	t := time.NewTicker(s.cfg.ProgressEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sample(ctx)
		}
	}
}

func (s *sampler) sample(ctx context.Context) {
	now := time.Now()
	dt := now.Sub(s.last).Seconds()
	s.last = now
	t := s.rec.tick()
	sm := Sample{T: round3(now.Sub(s.start).Seconds()), Up: t.up, P99: round3(t.p99), Errors: t.errs, Tunnels: t.tunnels}
	if dt > 0 {
		sm.ExchangesPerSec = round3(float64(t.n) / dt)
	}
	if s.cfg.ServerPID != 0 {
		if ps, err := readProc(s.cfg.ServerPID); err == nil {
			sm.RSSBytes, sm.CPUSeconds = ps.rss, round3(ps.cpu-s.cpu0)
			if dt > 0 {
				sm.CPUCores = round3((ps.cpu - s.lastCPU) / dt)
			}
			s.lastCPU = ps.cpu
			s.rssMax = max(s.rssMax, ps.rss)
		}
	}
	if s.cfg.Metrics != "" {
		if m, err := readMetrics(ctx, s.http, s.cfg.Metrics); err == nil {
			sm.Goroutines = m.goroutines
			s.goMax = max(s.goMax, m.goroutines)
			if n := m.storeWrites - s.lastMetrics.storeWrites; s.metricsOK && n > 0 && dt > 0 {
				sm.StoreWritesPerSec = round3(n / dt)
				sm.StoreWriteMs = round3((m.storeWriteSec - s.lastMetrics.storeWriteSec) / n * 1000)
			}
			s.lastMetrics, s.metricsOK = m, true
		}
	}
	s.samples = append(s.samples, sm)
	line := fmt.Sprintf("%6.0fs  up %d/%d  %.1f exch/s  p99 %.1f ms  errors %d", sm.T, t.up, s.cfg.Devices+s.cfg.Standard, sm.ExchangesPerSec, sm.P99, t.errs)
	if s.cfg.Tunnels > 0 {
		line += fmt.Sprintf("  tunnels %d/%d", t.tunnels, s.cfg.Tunnels)
	}
	if sm.RSSBytes != 0 {
		line += fmt.Sprintf("  server %.2f cores, RSS %.0f MiB", sm.CPUCores, float64(sm.RSSBytes)/(1<<20))
	}
	if sm.Goroutines != 0 {
		line += fmt.Sprintf(", %d goroutines, %.0f store writes/s (mean %.1f ms)", sm.Goroutines, sm.StoreWritesPerSec, sm.StoreWriteMs)
	}
	fmt.Fprintf(s.cfg.Progress, "%s\n", line)
}

// server is the server's figures over the run.
func (s *sampler) server(seconds float64) ServerStats {
	st := ServerStats{PID: s.cfg.ServerPID, RSSMaxBytes: s.rssMax, GoroutinesMax: s.goMax}
	if len(s.samples) > 0 {
		last := s.samples[len(s.samples)-1]
		st.RSSBytes, st.Goroutines, st.CPUSeconds = last.RSSBytes, last.Goroutines, last.CPUSeconds
	}
	if s.cpuOK && seconds > 0 {
		st.CPUCores = round3(st.CPUSeconds / seconds)
	}
	return st
}

// summary is the run in one paragraph.
func (r *Report) summary() string {
	s := fmt.Sprintf("%d async and %d standard devices (%d up), %d exchanges in %.0f s: %.1f/s;", r.Devices, r.Standard, r.DevicesUp, r.Exchanges, r.Seconds, r.ExchangesPerSec)
	for _, k := range kinds {
		if q, ok := r.Latency[k]; ok {
			s += fmt.Sprintf(" %s p50 %.1f p99 %.1f max %.1f ms (%d);", k, q.P50, q.P99, q.Max, q.Count)
		}
	}
	var errs int64
	for _, v := range r.Errors {
		errs += v
	}
	s += fmt.Sprintf(" errors %d; commands %d queued, %d acked (ack p50 %.0f p99 %.0f ms)", errs, r.Commands.Queued, r.Commands.Acked, r.Commands.Ack.P50, r.Commands.Ack.P99)
	if t := r.Tunnels; t != nil {
		s += fmt.Sprintf("; tunnels %d/%d opened (open p50 %.0f p99 %.0f ms), %d up at the end, %d/%d requests answered", t.Opened, t.Tunnels, t.Open.P50, t.Open.P99, t.UpAtEnd, t.Answered, t.Requests)
	}
	if st := r.Stack; st != nil {
		s += fmt.Sprintf("; stack over %d devices: %d delivered, %d running (running p50 %.0f p99 %.0f ms, all %.0f ms)", st.Targets, st.Delivered, st.Running, st.Reported.P50, st.Reported.P99, st.AllRunningMs)
	}
	if r.Server.PID != 0 {
		s += fmt.Sprintf("; server %.1f CPU s (%.2f cores), RSS %.0f MiB (max %.0f)", r.Server.CPUSeconds, r.Server.CPUCores, float64(r.Server.RSSBytes)/(1<<20), float64(r.Server.RSSMaxBytes)/(1<<20))
	}
	return s
}
