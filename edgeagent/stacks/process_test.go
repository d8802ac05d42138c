package stacks

// Tests of the compose helper's process handling, with fake helpers (shell
// scripts) run by helper.run.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fakeHelper writes an executable shell script and returns its path.
func fakeHelper(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), HelperName)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// readPID waits for the pid file a fake helper writes, and returns 0 if it
// is not there in time. It runs beside the test, not on its goroutine, so
// it cannot use testenv.Eventually, which fails the test with FailNow.
func readPID(t *testing.T, path string) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(path)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				return pid
			}
		}
	}
	t.Errorf("no pid in %s", path)
	return 0
}

func alive(pid int) bool {
	// A zombie still answers signal 0; look at its state.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}

// runBounded runs h.run and waits at most limit for it to return. It
// returns how long run took, or limit+ if it had not returned; unblock is
// called then so that run can return before the test ends.
func runBounded(t *testing.T, h *helper, ctx context.Context, limit time.Duration, unblock func()) (time.Duration, bool) {
	t.Helper()
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		_, _ = h.run(ctx, Request{Op: OpUp, Spec: &Spec{Project: "p"}}, "p")
	}()
	select {
	case <-done:
		return time.Since(start), true
	case <-time.After(limit):
		unblock()
		<-done
		return time.Since(start), false
	}
}

// TestHelperCancelKillsItsGroup: a cancelled run signals the helper's
// process group, not the helper alone, and returns: a child of the helper
// that inherited its standard error (a Compose plugin, a shell wrapper
// installed as outpost-compose) neither keeps running nor holds run up.
func TestHelperCancelKillsItsGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := fakeHelper(t, `trap '' TERM
cat >/dev/null
sleep 60 >/dev/null &
echo $! > "`+dir+`/child"
wait
`)
	h := &helper{path: path, log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	var childPID atomic.Int64
	read := make(chan struct{})
	go func() {
		defer close(read)
		childPID.Store(int64(readPID(t, filepath.Join(dir, "child"))))
		cancel()
	}()
	defer func() { <-read }()
	limit := helperStop + 5*time.Second
	took, ok := runBounded(t, h, ctx, limit, func() {
		if child := int(childPID.Load()); child > 0 {
			_ = syscall.Kill(child, syscall.SIGKILL)
		}
	})
	if !ok {
		t.Errorf("a cancelled run had not returned %v after cancellation (SIGTERM + %v + SIGKILL)", limit, helperStop)
	} else {
		t.Logf("run returned %v after the start", took)
	}
	child := int(childPID.Load())
	// SIGKILL is delivered asynchronously: give the child a moment to die.
	for deadline := time.Now().Add(5 * time.Second); child > 0 && alive(child) && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
	}
	if child > 0 && ok && alive(child) {
		t.Errorf("the helper's child %d still runs after the cancelled helper was killed", child)
		_ = syscall.Kill(child, syscall.SIGKILL)
	}
}

// TestHelperExitedChildHoldsStderr: a helper that answered and exited is
// not waited for while something it left behind holds its standard error.
func TestHelperExitedChildHoldsStderr(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := fakeHelper(t, `cat >/dev/null
sleep 60 >/dev/null &
echo $! > "`+dir+`/child"
echo '{"services":["web"]}'
exit 0
`)
	h := &helper{path: path, log: slog.New(slog.DiscardHandler)}
	var childPID atomic.Int64
	read := make(chan struct{})
	go func() { defer close(read); childPID.Store(int64(readPID(t, filepath.Join(dir, "child")))) }()
	defer func() { <-read }()
	limit := helperStop + 5*time.Second
	took, ok := runBounded(t, h, context.Background(), limit, func() {
		if child := int(childPID.Load()); child > 0 {
			_ = syscall.Kill(child, syscall.SIGKILL)
		}
	})
	if !ok {
		t.Errorf("run had not returned %v after a helper that answered and exited at once: it waits for whatever inherited the helper's stderr", limit)
	} else {
		t.Logf("run returned after %v", took)
	}
}

// TestHelperDiesWithAgent: the helper dies with an agent killed by
// SIGKILL (Pdeathsig).
func TestHelperDiesWithAgent(t *testing.T) {
	if os.Getenv("OUTPOST_STACKS_TEST_FAKE_AGENT") != "" {
		// The fake agent: run a helper that never ends.
		h := &helper{path: os.Getenv("OUTPOST_STACKS_TEST_FAKE_AGENT"), log: slog.New(slog.DiscardHandler)}
		_, _ = h.run(context.Background(), Request{Op: OpDown, Project: "p"}, "p")
		return
	}
	dir := t.TempDir()
	path := fakeHelper(t, `echo $$ > "`+dir+`/helper"
exec sleep 60
`)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var agent *os.Process
	{
		attr := &os.ProcAttr{Env: append(os.Environ(), "OUTPOST_STACKS_TEST_FAKE_AGENT="+path), Files: []*os.File{nil, os.Stderr, os.Stderr}}
		agent, err = os.StartProcess(exe, []string{exe, "-test.run=^TestHelperDiesWithAgent$"}, attr)
		if err != nil {
			t.Fatal(err)
		}
	}
	pid := readPID(t, filepath.Join(dir, "helper"))
	_ = agent.Kill()
	_, _ = agent.Wait()
	for deadline := time.Now().Add(5 * time.Second); alive(pid) && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
	}
	if alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("the helper %d outlived the agent killed by SIGKILL", pid)
	}
}

// TestFindPrefersBeside: with an outpost-compose beside the executable
// and another first on PATH, the one beside is used; without the one
// beside, PATH's.
func TestFindPrefersBeside(t *testing.T) {
	if os.Getenv("OUTPOST_STACKS_TEST_FIND") != "" {
		h := &helper{log: slog.New(slog.DiscardHandler)}
		p, err := h.find()
		fmt.Printf("FOUND %s %v\n", p, err)
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, onPath := t.TempDir(), t.TempDir()
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	agent := filepath.Join(bin, "agent.test")
	for p, data := range map[string][]byte{agent: b, filepath.Join(bin, HelperName): []byte("#!/bin/sh\n"), filepath.Join(onPath, HelperName): []byte("#!/bin/sh\n")} {
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	find := func() string {
		cmd := exec.Command(agent, "-test.run=^TestFindPrefersBeside$")
		cmd.Env = append(os.Environ(), "OUTPOST_STACKS_TEST_FIND=1", "PATH="+onPath+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "FOUND ") {
				return strings.TrimPrefix(l, "FOUND ")
			}
		}
		t.Fatalf("no answer: %s", out)
		return ""
	}
	if got := find(); !strings.HasPrefix(got, filepath.Join(bin, HelperName)+" ") {
		t.Errorf("with a helper beside and one on PATH, found %s", got)
	}
	_ = os.Remove(filepath.Join(bin, HelperName))
	if got := find(); !strings.HasPrefix(got, filepath.Join(onPath, HelperName)+" ") {
		t.Errorf("with a helper on PATH only, found %s", got)
	}
}
