//go:build integration

package jobs_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"outpost/edgeagent/jobs"
	"outpost/internal/testenv"
)

// TestChrootRun runs a job in a tiny host root holding only busybox: what
// the script writes to / lands in the host root, not in the real /.
func TestChrootRun(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "" {
			t.Skip("needs root for chroot")
		}
		testenv.Require(t, "root for chroot", fmt.Errorf("running as uid %d", os.Geteuid()))
	}
	bin, err := os.ReadFile(testenv.BusyboxPath)
	if errors.Is(err, fs.ErrNotExist) {
		err = testenv.ErrNoBusybox
	}
	testenv.Require(t, "busybox", err)

	root := t.TempDir()
	for _, d := range []string{"bin", "tmp"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("busybox", filepath.Join(root, "bin", "sh")); err != nil {
		t.Fatal(err)
	}
	marker := fmt.Sprintf("/outpost-jobs-test-marker-%d", os.Getpid())
	if _, err := os.Stat(marker); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s exists before the test: %v", marker, err)
	}

	h := newHarness(t, filepath.Join(t.TempDir(), "data"), func(c *jobs.Config) { c.HostRoot = root })
	h.upsert(t, jobs.Job{ID: 1, Version: 1, Cron: "* * * * *", Collect: true,
		Script: fmt.Appendf(nil, "echo inside > %s\necho cwd $(pwd)\n", marker)})
	h.tick(t, 1)
	res := h.result(t)
	if res.ExitCode != 0 || res.Error != "" {
		t.Fatalf("exit %d, error %q; output %q", res.ExitCode, res.Error, res.Output)
	}
	if !strings.Contains(string(res.Output), "cwd /\n") {
		t.Errorf("output %q, want the script to start in the host root's /", res.Output)
	}
	if b, err := os.ReadFile(filepath.Join(root, marker)); err != nil || string(b) != "inside\n" {
		t.Errorf("marker in the host root: %q, %v", b, err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, fs.ErrNotExist) {
		_ = os.Remove(marker)
		t.Errorf("the script wrote the real %s: %v", marker, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "tmp")); len(ents) != 0 {
		t.Errorf("%d files left in the host root's /tmp, want the script removed", len(ents))
	}
}
