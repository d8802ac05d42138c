// Command capture regenerates the real Docker captures in testdata/docker: for
// each size N it fills the local engine with about N containers shaped like an
// edge device's (compose projects with their networks and volumes, standalone
// containers, a mix of running, exited and never-started ones), reads a
// snapshot with snapshot.DockerCollector, writes it to docker-N.json, and
// removes what it made.
//
// Run it from the module root (15 to 20 minutes on 2 busy cores, nearly all of
// it the 500: creating 500 containers, then removing them):
//
//	go run ./internal/tools/capture -sizes 5,50,500 -out testdata/docker
//
// No image is pulled: every image is imported from the host's /bin/busybox
// (apt-get install busybox-static) by internal/testenv. Every object it
// creates carries the label outpost.capture=1, so an interrupted run is
// cleaned up by the next run, or by
//
//	go run ./internal/tools/capture -clean
//
// The capture holds only what the tool made (plus the engine's bridge, host
// and none networks and the busybox base image), never other objects on the
// engine, and the outpost.capture label is left out of it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	var cfg config
	sizes := flag.String("sizes", "5,50,500", "comma-separated container counts, one capture each")
	flag.StringVar(&cfg.out, "out", "testdata/docker", "directory for docker-N.json")
	flag.IntVar(&cfg.workers, "workers", 4, "containers created at once")
	flag.BoolVar(&cfg.keep, "keep", false, "leave the last size's objects on the engine")
	flag.BoolVar(&cfg.clean, "clean", false, "only remove objects left by an earlier run")
	flag.Parse()
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "capture: -sizes: %q is not a positive count\n", s)
			os.Exit(2)
		}
		cfg.sizes = append(cfg.sizes, n)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "capture:", err)
		os.Exit(1)
	}
}
