// Command dictgen trains Outpost's zstd dictionary from the real captures in
// testdata/docker. `go generate ./protocol` runs it:
//
//	go run ./internal/tools/dictgen -captures testdata/docker -out protocol/dict/v1.zdict
package main

import (
	"flag"
	"fmt"
	"os"

	"outpost/internal/corpus"
)

// DictID identifies the v1 dictionary in zstd frame headers ("OP" 0 1).
const DictID = 0x4F500001

func main() {
	captures := flag.String("captures", "testdata/docker", "directory of docker-*.json captures")
	out := flag.String("out", "protocol/dict/v1.zdict", "dictionary file to write")
	size := flag.Int("size", 32<<10, "dictionary size, bytes")
	id := flag.Uint("id", DictID, "dictionary ID")
	flag.Parse()
	if err := run(*captures, *out, *size, uint32(*id)); err != nil {
		fmt.Fprintf(os.Stderr, "dictgen: %v\n", err)
		os.Exit(1)
	}
}

func run(captures, out string, size int, id uint32) error {
	caps, err := corpus.Load(captures)
	if err != nil {
		return err
	}
	d, err := corpus.TrainDict(caps, size, id)
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, d, 0o644); err != nil {
		return err
	}
	fmt.Printf("dictgen: %d bytes, ID %#x, from %d captures -> %s\n", len(d), id, len(caps), out)
	return nil
}
