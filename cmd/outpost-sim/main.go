// Command outpost-sim simulates a fleet of async and standard devices, their
// tunnels and an edge stack against a running Outpost server, and reports
// what it cost (package sim).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"outpost/sim"
)

func main() {
	cfg := sim.Defaults
	flag.StringVar(&cfg.Server, "server", cfg.Server, "the server's base URL, https://host:port")
	flag.StringVar(&cfg.User, "user", cfg.User, "API user")
	flag.StringVar(&cfg.Password, "password", os.Getenv("OUTPOST_SIM_PASSWORD"), "API password (default $OUTPOST_SIM_PASSWORD)")
	flag.IntVar(&cfg.Devices, "devices", cfg.Devices, "async devices to simulate")
	flag.IntVar(&cfg.Standard, "standard", cfg.Standard, "standard devices to simulate (polling /edge/v1/poll)")
	flag.StringVar(&cfg.Name, "name", cfg.Name, "name prefix of the staged environments")
	flag.IntVar(&cfg.Freq, "freq", cfg.Freq, "ping, snapshot and command frequency of every async device, and the standard devices' snapshot frequency, seconds")
	flag.IntVar(&cfg.PollFreq, "poll-freq", cfg.PollFreq, "poll interval of the standard devices, seconds")
	flag.IntVar(&cfg.Tunnels, "tunnels", cfg.Tunnels, "standard devices asked to open a tunnel, held open idle")
	flag.IntVar(&cfg.BusyTunnels, "busy-tunnels", cfg.BusyTunnels, "how many of the tunnels carry the tunnel requests (0: all)")
	flag.Float64Var(&cfg.TunnelRequestsPerSec, "tunnel-requests-per-sec", cfg.TunnelRequestsPerSec, "requests per second through the server's API and the tunnels (Docker /_ping, /containers/json, agent ping and host info)")
	flag.IntVar(&cfg.StackGroup, "stack-group", cfg.StackGroup, "devices (async first) in an edge group targeted by an edge stack once they checked in (0: no stack)")
	flag.DurationVar(&cfg.Ramp, "ramp", cfg.Ramp, "spread of the devices' first contacts (0: one frequency)")
	flag.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long the fleet runs with commands queued")
	flag.DurationVar(&cfg.Grace, "grace", cfg.Grace, "how long it then runs for the last acks (0: two frequencies and 10 s)")
	flag.Float64Var(&cfg.CommandsPerSec, "commands-per-sec", cfg.CommandsPerSec, "commands queued per second across the fleet")
	flag.Float64Var(&cfg.ChangesPerHour, "changes-per-hour", cfg.ChangesPerHour, "fraction of each device's containers changing state per hour")
	flag.StringVar(&cfg.Capture, "capture", cfg.Capture, "capture every device starts from (a file of -testdata)")
	flag.StringVar(&cfg.Testdata, "testdata", cfg.Testdata, "directory of the Docker captures")
	flag.IntVar(&cfg.ServerPID, "server-pid", cfg.ServerPID, "the server's PID, for its CPU and RSS from /proc")
	flag.StringVar(&cfg.Metrics, "metrics", cfg.Metrics, "the server's metrics URL (--metrics-addr), for its goroutines, e.g. http://127.0.0.1:9090/metrics")
	flag.StringVar(&cfg.JSON, "json", cfg.JSON, "write the report as JSON to this file")
	flag.StringVar(&cfg.HTML, "html", cfg.HTML, "write the report as an HTML page with charts to this file")
	flag.DurationVar(&cfg.ProgressEvery, "progress", cfg.ProgressEvery, "progress line interval")
	flag.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the run's randomness")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := sim.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "outpost-sim:", err)
		os.Exit(1)
	}
}
