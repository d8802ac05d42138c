// Command outpost-server runs the Outpost server.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"outpost/server"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "backup" {
		os.Exit(backup(os.Args[2:]))
	}
	cfg := server.Defaults
	var pwFile string
	edgeMemory, memoryLimit := "256MiB", "auto"
	flag.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory (store, TLS certificate, keys)")
	flag.StringVar(&cfg.Bind, "bind", cfg.Bind, "address of the HTTPS API and edge endpoints")
	flag.StringVar(&cfg.TunnelAddr, "tunnel-addr", cfg.TunnelAddr, "address of the reverse tunnel listener")
	flag.StringVar(&cfg.PublicURL, "public-url", "", "URL agents use to reach the server, in their edge keys (default https://localhost:PORT, which agents in containers cannot reach)")
	flag.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "address of the Prometheus /metrics listener, without login (\"off\" disables it)")
	flag.StringVar(&pwFile, "admin-password-file", "", "file holding the initial administrator password (or set OUTPOST_ADMIN_PASSWORD)")
	flag.StringVar(&cfg.ClientCA, "client-ca", cfg.ClientCA, "PEM file of CA certificates; when set, edge endpoints require a device client certificate from it")
	flag.StringVar(&edgeMemory, "edge-memory", edgeMemory, "the most bytes all edge requests in flight may hold, read and inflated; past it devices are told to slow down")
	flag.StringVar(&memoryLimit, "memory-limit", memoryLimit, "the runtime's soft memory limit: a size, \"auto\" (half the machine's memory, unless GOMEMLIMIT is set) or \"off\"")
	flag.Parse()
	var err error
	if cfg.EdgeMemory, err = server.ParseSize(edgeMemory); err != nil {
		fmt.Fprintf(os.Stderr, "outpost-server: --edge-memory: %v\n", err)
		os.Exit(2)
	}
	if cfg.MemoryLimit, err = server.ParseMemoryLimit(memoryLimit); err != nil {
		fmt.Fprintf(os.Stderr, "outpost-server: --memory-limit: %v\n", err)
		os.Exit(2)
	}

	cfg.AdminPassword = os.Getenv("OUTPOST_ADMIN_PASSWORD")
	if pwFile != "" {
		b, err := os.ReadFile(pwFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "outpost-server: admin-password-file: %v\n", err)
			os.Exit(2)
		}
		cfg.AdminPassword = strings.TrimSpace(string(b))
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := server.Run(ctx, cfg, nil); err != nil {
		fmt.Fprintf(os.Stderr, "outpost-server: %v\n", err)
		os.Exit(1)
	}
}
