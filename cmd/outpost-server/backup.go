package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"outpost/server"
)

// backup is `outpost-server backup --data DIR --out FILE`: a copy of a
// stopped server's store. It returns the exit code.
func backup(args []string) int {
	fs := flag.NewFlagSet("outpost-server backup", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: outpost-server backup --data DIR --out FILE\n\n"+
			"Copies the store of a stopped server. For a running server, download GET /api/backup as an administrator.\n\n")
		fs.PrintDefaults()
	}
	dataDir := fs.String("data", server.Defaults.DataDir, "the server's data directory")
	out := fs.String("out", "", "file to write the backup to (replaced if it exists)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := server.Backup(ctx, *dataDir, *out)
	if err != nil {
		fmt.Fprintf(os.Stderr, "outpost-server: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "outpost-server: wrote %d bytes to %s\n", n, *out)
	return 0
}
