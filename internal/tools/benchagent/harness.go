package main

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

// harness lets this program use internal/testenv's process and polling
// helpers (Start, FreeAddr, Eventually), which take a testing.TB, outside a
// test. testing.TB cannot be implemented outside package testing, so the
// interface is embedded (nil) and the methods those helpers call are
// implemented here: a helper calling another one would panic on the nil
// interface, loudly.
//
// Fatal and Fatalf end the calling goroutine's harness.run with a panic that
// run recovers; cleanups run in reverse order at close, as a test's do.
type harness struct {
	testing.TB

	mu       sync.Mutex // guards cleanups, failed, tmp
	cleanups []func()
	failed   bool
	tmp      []string
}

func newHarness() *harness { return &harness{} }

// errFatal is what Fatal panics with; run recovers it.
var errFatal = errors.New("benchagent: fatal")

// run calls f and reports whether it returned without a Fatal.
func (h *harness) run(f func()) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if r != errFatal {
				panic(r)
			}
			ok = false
		}
	}()
	f()
	return !h.Failed()
}

// close runs the cleanups, the latest first, and removes the temporary
// directories.
func (h *harness) close() {
	h.mu.Lock()
	cs := h.cleanups
	h.cleanups = nil
	h.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
	for _, d := range h.tmp {
		_ = os.RemoveAll(d)
	}
}

func (h *harness) Helper() {}

func (h *harness) Cleanup(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cleanups = append(h.cleanups, f)
}

func (h *harness) Failed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failed
}

func (h *harness) Logf(format string, args ...any) { logf(format, args...) }

func (h *harness) Errorf(format string, args ...any) {
	h.mu.Lock()
	h.failed = true
	h.mu.Unlock()
	logf("error: "+format, args...)
}

func (h *harness) Fatalf(format string, args ...any) {
	h.Errorf(format, args...)
	panic(errFatal)
}

func (h *harness) Fatal(args ...any) { h.Fatalf("%s", fmt.Sprint(args...)) }

func (h *harness) TempDir() string {
	d, err := os.MkdirTemp("", "benchagent")
	if err != nil {
		h.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tmp = append(h.tmp, d)
	return d
}
