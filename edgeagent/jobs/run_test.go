package jobs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"outpost/edgeagent/jobs"
	"outpost/internal/testenv"
)

// TestRealCronRun runs a job on the real clock, every second, with the
// agent's own /bin/sh.
func TestRealCronRun(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, filepath.Join(dir, "data"), func(c *jobs.Config) { c.Clock = nil })
	marker := filepath.Join(dir, "ran")
	h.upsert(t, jobs.Job{ID: 1, Version: 1, Cron: "*/1 * * * * *", Collect: true,
		Script: fmt.Appendf(nil, "echo job ran > %s\necho hello from job $OUTPOST_JOB_ID\n", marker)})

	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		b, err := os.ReadFile(marker)
		return err == nil && string(b) == "job ran\n", fmt.Sprintf("marker: %q, %v", b, err)
	})
	res := h.result(t)
	if res.JobID != 1 || res.Run != 1 || res.ExitCode != 0 || res.Error != "" {
		t.Errorf("result %+v, want job 1 run 1, exit 0, no error", res)
	}
	if !strings.Contains(string(res.Output), "hello from job 1\n") {
		t.Errorf("output %q, want the echoed line", res.Output)
	}
	if res.Duration <= 0 || res.Started.IsZero() || time.Since(res.Started) > time.Minute {
		t.Errorf("started %v, duration %v; want a recent start and a positive duration", res.Started, res.Duration)
	}
}
