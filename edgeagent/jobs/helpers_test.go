package jobs_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"outpost/edgeagent/jobs"
)

// epoch is where fake clocks start: half a minute past, so a minute's
// advance crosses exactly one minute boundary.
var epoch = time.Date(2030, 1, 1, 0, 0, 30, 0, time.UTC)

// harness is a Runner on a temp dir with HostRoot "/" whose results go to a
// channel. The Runner is closed when the test ends.
type harness struct {
	dir     string
	clock   *clockwork.FakeClock // nil with a real clock
	results chan jobs.Result
	r       *jobs.Runner
}

// newHarness starts a Runner on a fake clock; edit changes the config first
// (set Clock to nil for a real one).
func newHarness(t *testing.T, dir string, edit func(*jobs.Config)) *harness {
	t.Helper()
	h := &harness{dir: dir, results: make(chan jobs.Result, 100)}
	cfg := jobs.Config{
		Dir:      dir,
		HostRoot: "/",
		OnResult: func(res jobs.Result) { h.results <- res },
		Log:      slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})),
		Clock:    clockwork.NewFakeClockAt(epoch),
	}
	if edit != nil {
		edit(&cfg)
	}
	h.clock, _ = cfg.Clock.(*clockwork.FakeClock)
	r, err := jobs.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.r = r
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// tick waits until the scheduler has armed a timer for each of the
// scheduled jobs, then moves the fake clock on a minute: every "* * * * *"
// job ticks once.
func (h *harness) tick(t *testing.T, scheduled int) {
	t.Helper()
	h.armed(t, scheduled)
	h.clock.Advance(time.Minute)
}

// armed waits until the scheduler has armed n timers on the fake clock.
func (h *harness) armed(t *testing.T, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.clock.BlockUntilContext(ctx, n); err != nil {
		t.Fatalf("the scheduler did not arm %d timers: %v", n, err)
	}
}

// result returns the next result.
func (h *harness) result(t *testing.T) jobs.Result {
	t.Helper()
	select {
	case res := <-h.results:
		return res
	case <-time.After(10 * time.Second):
		t.Fatal("no result after 10s")
		return jobs.Result{}
	}
}

// quiet fails the test if a result comes within d.
func (h *harness) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case res := <-h.results:
		t.Fatalf("unexpected result: job %d run %d (exit %d, %q)", res.JobID, res.Run, res.ExitCode, res.Error)
	case <-time.After(d):
	}
}

// upsert fails the test on an error.
func (h *harness) upsert(t *testing.T, j jobs.Job) {
	t.Helper()
	if err := h.r.Upsert(j); err != nil {
		t.Fatalf("Upsert: %v", err)
	}
}
