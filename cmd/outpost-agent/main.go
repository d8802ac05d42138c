// Command outpost-agent runs the Outpost edge agent beside a Docker engine.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"outpost/edgeagent"
)

func main() {
	cfg, err := edgeagent.ConfigFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "outpost-agent: configuration:\n%v\n", err)
		os.Exit(2)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := edgeagent.Run(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "outpost-agent: %v\n", err)
		os.Exit(1)
	}
}
