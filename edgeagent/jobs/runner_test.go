package jobs_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"outpost/edgeagent/jobs"
	"outpost/internal/testenv"
)

func TestCronValidation(t *testing.T) {
	h := newHarness(t, t.TempDir(), nil)
	for _, tc := range []struct {
		cron string
		want string // in the error, besides the quoted expression
	}{
		{"", "empty"},
		{"* * *", "3 fields"},
		{"* * * * * * *", "7 fields"},
		{"61 * * * *", "above maximum"},
		{"* * * * * 61", "above maximum"},
		{"* * * nope *", "nope"},
		{"@fortnightly", "fortnightly"},
		{"0 0 30 2 *", "matches no date"},
	} {
		err := h.r.Upsert(jobs.Job{ID: 1, Version: 1, Cron: tc.cron, Script: []byte("true")})
		switch {
		case !errors.Is(err, jobs.ErrInvalid):
			t.Errorf("cron %q: err = %v, want ErrInvalid", tc.cron, err)
		case !strings.Contains(err.Error(), strconv.Quote(tc.cron)) || !strings.Contains(err.Error(), tc.want):
			t.Errorf("cron %q: error %q does not name the expression and say %q", tc.cron, err, tc.want)
		}
	}
	if got := h.r.Jobs(); len(got) != 0 {
		t.Errorf("invalid jobs were taken: %+v", got)
	}
	if ents, _ := os.ReadDir(filepath.Join(h.dir, "jobs")); len(ents) != 0 {
		t.Errorf("invalid jobs were saved: %d entries", len(ents))
	}

	for i, cron := range []string{"0 3 * * *", "*/1 * * * * *", "@hourly", "CRON_TZ=UTC 30 2 * * mon-fri"} {
		if err := h.r.Upsert(jobs.Job{ID: uint64(10 + i), Version: 1, Cron: cron}); err != nil {
			t.Errorf("cron %q: %v", cron, err)
		}
	}
}

func TestConfigErrorsAllAtOnce(t *testing.T) {
	_, err := jobs.New(jobs.Config{HostRoot: "host", Timeout: -time.Second})
	if err == nil {
		t.Fatal("New accepted a config without Dir")
	}
	for _, want := range []string{"empty Dir", `HostRoot="host"`, "Timeout=-1s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}

	missing := filepath.Join(t.TempDir(), "host")
	_, err = jobs.New(jobs.Config{Dir: t.TempDir(), HostRoot: missing})
	if err == nil || !strings.Contains(err.Error(), strconv.Quote(missing)+" is not a directory") {
		t.Errorf("New with a missing host root: err = %v", err)
	}
}

func TestUpsertVersionOrder(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, nil)
	job := func(version uint64, word string) jobs.Job {
		return jobs.Job{ID: 7, Version: version, Cron: "* * * * *", Script: []byte("echo " + word), Collect: true}
	}
	check := func(version uint64, word string) {
		t.Helper()
		got := h.r.Jobs()
		if len(got) != 1 || got[0].Version != version || string(got[0].Script) != "echo "+word {
			t.Fatalf("Jobs() = %+v, want version %d saying %s", got, version, word)
		}
	}

	h.upsert(t, job(2, "two"))
	check(2, "two")
	h.upsert(t, job(1, "one")) // older: no-op
	check(2, "two")
	h.upsert(t, job(2, "other")) // same version: no-op
	check(2, "two")
	h.upsert(t, job(3, "three"))
	check(3, "three")

	h.tick(t, 1)
	if res := h.result(t); string(res.Output) != "three\n" {
		t.Errorf("run output %q, want the newest script's", res.Output)
	}

	// The newest version is what a restart loads.
	if err := h.r.Close(); err != nil {
		t.Fatal(err)
	}
	h = newHarness(t, dir, nil)
	check(3, "three")
}

func TestRestartKeepsJobsAndRunNumbers(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, nil)
	h.upsert(t, jobs.Job{ID: 3, Version: 1, Cron: "* * * * *", Script: []byte("echo run $OUTPOST_JOB_RUN"), Collect: true})
	for want := uint64(1); want <= 2; want++ {
		h.tick(t, 1)
		if res := h.result(t); res.Run != want || res.JobID != 3 {
			t.Fatalf("job %d run %d, want job 3 run %d", res.JobID, res.Run, want)
		}
	}
	if err := h.r.Close(); err != nil {
		t.Fatal(err)
	}

	// What a crash mid-run leaves: the ring file of its log and its script.
	leftovers := []string{filepath.Join(dir, "jobs", "3", "logs", ".9-123.ring"), filepath.Join(dir, "tmp", "outpost-job-3-9-123.sh")}
	for _, f := range leftovers {
		if err := os.WriteFile(f, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	h = newHarness(t, dir, nil)
	if got := h.r.Jobs(); len(got) != 1 || got[0].ID != 3 {
		t.Fatalf("after restart Jobs() = %+v, want job 3", got)
	}
	for _, f := range leftovers {
		if _, err := os.Stat(f); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left after restart: %v", f, err)
		}
	}
	h.tick(t, 1)
	res := h.result(t)
	if res.Run != 3 || string(res.Output) != "run 3\n" {
		t.Errorf("after restart: run %d output %q, want run 3", res.Run, res.Output)
	}
	if b, err := h.r.Logs(3, 1); err != nil || string(b) != "run 1\n" {
		t.Errorf("Logs(3, 1) after restart = %q, %v; want run 1's log", b, err)
	}
}

func TestLogLimitKeepsTail(t *testing.T) {
	h := newHarness(t, t.TempDir(), nil)
	const lines = 200000 // about 1.3 MB: more than LogLimit
	var want bytes.Buffer
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	if want.Len() <= jobs.LogLimit {
		t.Fatalf("test output %d bytes does not pass LogLimit", want.Len())
	}
	h.upsert(t, jobs.Job{ID: 1, Version: 1, Cron: "* * * * *", Script: fmt.Appendf(nil, "seq 1 %d", lines), Collect: true})
	h.tick(t, 1)
	res := h.result(t)
	if res.ExitCode != 0 || res.Error != "" {
		t.Fatalf("exit %d, error %q", res.ExitCode, res.Error)
	}
	if w := want.Bytes()[want.Len()-jobs.TailSize:]; !bytes.Equal(res.Output, w) {
		t.Errorf("Output is %d bytes ending %q, want the last %d bytes of the output", len(res.Output), tail(res.Output), jobs.TailSize)
	}
	log, err := h.r.Logs(1, res.Run)
	if err != nil {
		t.Fatal(err)
	}
	if w := want.Bytes()[want.Len()-jobs.LogLimit:]; !bytes.Equal(log, w) {
		t.Errorf("log is %d bytes starting %q, want the last %d bytes of the output", len(log), log[:min(len(log), 20)], jobs.LogLimit)
	}
}

func tail(b []byte) []byte { return b[max(len(b)-20, 0):] }

func TestTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, filepath.Join(dir, "data"), func(c *jobs.Config) { c.Timeout = 500 * time.Millisecond })
	pidFile := filepath.Join(dir, "bg.pid")
	h.upsert(t, jobs.Job{ID: 1, Version: 1, Cron: "* * * * *", Collect: true,
		Script: fmt.Appendf(nil, "sleep 60 &\necho $! > %s\necho waiting\nsleep 60\n", pidFile)})
	h.tick(t, 1)
	res := h.result(t)
	if res.ExitCode != -1 || !strings.Contains(res.Error, "timed out") {
		t.Errorf("exit %d, error %q; want -1 and a timeout", res.ExitCode, res.Error)
	}
	if res.Duration < 500*time.Millisecond || res.Duration > 5*time.Second {
		t.Errorf("duration %v, want about the 500ms timeout", res.Duration)
	}
	if string(res.Output) != "waiting\n" {
		t.Errorf("output %q, want what the script printed before it was killed", res.Output)
	}

	// The background sleep was in the group: it is gone (or a zombie nobody
	// reaps, in a container without an init).
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(string(b))
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		if errors.Is(err, fs.ErrNotExist) {
			return true, ""
		}
		// pid (comm) state ...
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		return len(f) > 0 && f[0] == "Z", fmt.Sprintf("background sleep %s still there: %s", pid, stat)
	})
}

func TestExitCodeWithoutCollect(t *testing.T) {
	h := newHarness(t, t.TempDir(), nil)
	h.upsert(t, jobs.Job{ID: 2, Version: 1, Cron: "* * * * *", Script: []byte("echo out\necho err >&2\nexit 3\n")})
	h.tick(t, 1)
	res := h.result(t)
	if res.ExitCode != 3 || res.Error != "" || res.Output != nil || res.Run != 1 || res.Started.IsZero() {
		t.Errorf("result %+v, want exit 3, no error, no output (Collect is off), run 1", res)
	}
	if b, err := h.r.Logs(2, 0); err != nil || string(b) != "out\nerr\n" {
		t.Errorf("Logs(2, 0) = %q, %v; want both streams", b, err)
	}
}

func TestFilesArePrivate(t *testing.T) {
	h := newHarness(t, t.TempDir(), nil)
	h.upsert(t, jobs.Job{ID: 1, Version: 1, Cron: "* * * * *", Script: []byte("echo hi")})
	h.tick(t, 1)
	h.result(t)
	err := filepath.WalkDir(h.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = fs.ModeDir | 0o700
		}
		if path != h.dir && fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRemoveStopsRuns(t *testing.T) {
	h := newHarness(t, t.TempDir(), nil)
	for id := uint64(1); id <= 2; id++ {
		h.upsert(t, jobs.Job{ID: id, Version: 1, Cron: "* * * * *", Script: []byte("echo hi")})
	}
	h.tick(t, 2)
	h.result(t)
	h.result(t)

	if err := h.r.Remove(1); err != nil {
		t.Fatal(err)
	}
	if got := h.r.Jobs(); len(got) != 1 || got[0].ID != 2 {
		t.Errorf("Jobs() = %+v, want job 2 only", got)
	}
	if _, err := h.r.Logs(1, 0); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("Logs(1, 0) err = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(filepath.Join(h.dir, "jobs", "1")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("job 1's files are still there: %v", err)
	}

	h.tick(t, 1)
	if res := h.result(t); res.JobID != 2 || res.Run != 2 {
		t.Errorf("got job %d run %d, want job 2 run 2", res.JobID, res.Run)
	}
	h.quiet(t, 300*time.Millisecond) // no run of job 1 after it

	for _, id := range []uint64{1, 99} {
		if err := h.r.Remove(id); err != nil {
			t.Errorf("Remove(%d) of an unknown job: %v", id, err)
		}
	}
}

func TestRemoveKillsRunningRun(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, filepath.Join(dir, "data"), nil)
	started := filepath.Join(dir, "started")
	job := jobs.Job{ID: 4, Version: 1, Cron: "* * * * *", Script: fmt.Appendf(nil, "touch %s\nsleep 60\n", started)}
	h.upsert(t, job)
	h.tick(t, 1)
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		_, err := os.Stat(started)
		return err == nil, "the script has not started"
	})

	begin := time.Now()
	if err := h.r.Remove(4); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("Remove took %v", d)
	}
	select {
	case res := <-h.results: // handed over before Remove returned
		if res.ExitCode != -1 || !strings.Contains(res.Error, "removed") {
			t.Errorf("exit %d, error %q; want -1 and that the job was removed", res.ExitCode, res.Error)
		}
	default:
		t.Fatal("Remove returned before the killed run's result")
	}

	// Added again under the same ID, the job goes on counting.
	job.Script = []byte("true")
	h.upsert(t, job)
	h.tick(t, 1)
	if res := h.result(t); res.Run != 2 {
		t.Errorf("run %d after Remove and Upsert, want 2: run numbers are never reused", res.Run)
	}
}

func TestSingletonSkipsOverlappingTick(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, filepath.Join(dir, "data"), nil)
	starts, release := filepath.Join(dir, "starts"), filepath.Join(dir, "release")
	h.upsert(t, jobs.Job{ID: 1, Version: 1, Cron: "* * * * *", Script: fmt.Appendf(nil,
		"echo start >> %s\nwhile [ ! -e %s ]; do sleep 0.02; done\n", starts, release)})
	countStarts := func() int {
		b, _ := os.ReadFile(starts)
		return bytes.Count(b, []byte("start"))
	}

	h.tick(t, 1)
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		return countStarts() == 1, "run 1 has not started"
	})
	if _, err := h.r.Logs(1, 1); !errors.Is(err, jobs.ErrRunning) {
		t.Errorf("Logs(1, 1) of the running run: err = %v, want ErrRunning", err)
	}
	if _, err := h.r.Logs(1, 0); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("Logs(1, 0) before any run ended: err = %v, want ErrNotFound", err)
	}
	h.tick(t, 1) // while run 1 goes on
	h.tick(t, 1) // and once more
	// The scheduler arms the next timer once it has dropped the tick.
	h.armed(t, 1)

	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if res := h.result(t); res.Run != 1 || res.ExitCode != 0 {
		t.Fatalf("run %d exit %d %q, want run 1 to end well", res.Run, res.ExitCode, res.Error)
	}
	h.quiet(t, 300*time.Millisecond) // the dropped ticks were not queued
	h.tick(t, 1)
	if res := h.result(t); res.Run != 2 {
		t.Errorf("run %d, want 2", res.Run)
	}
	if n := countStarts(); n != 2 {
		t.Errorf("script started %d times, want 2: ticks during a run must be dropped", n)
	}
}

func TestLogsKeepsLastRuns(t *testing.T) {
	h := newHarness(t, t.TempDir(), nil)
	h.upsert(t, jobs.Job{ID: 5, Version: 1, Cron: "* * * * *", Script: []byte("echo run $OUTPOST_JOB_RUN")})
	const runs = jobs.KeepRuns + 2
	for range runs {
		h.tick(t, 1)
		h.result(t)
	}
	for _, tc := range []struct {
		run  uint64
		want string // "" for ErrNotFound
	}{
		{0, fmt.Sprintf("run %d\n", runs)},
		{runs, fmt.Sprintf("run %d\n", runs)},
		{runs - jobs.KeepRuns + 1, fmt.Sprintf("run %d\n", runs-jobs.KeepRuns+1)},
		{runs - jobs.KeepRuns, ""},
		{1, ""},
		{runs + 1, ""},
	} {
		b, err := h.r.Logs(5, tc.run)
		switch {
		case tc.want == "" && !errors.Is(err, jobs.ErrNotFound):
			t.Errorf("Logs(5, %d) = %q, %v; want ErrNotFound", tc.run, b, err)
		case tc.want != "" && (err != nil || string(b) != tc.want):
			t.Errorf("Logs(5, %d) = %q, %v; want %q", tc.run, b, err, tc.want)
		}
	}
	if _, err := h.r.Logs(6, 0); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("Logs of an unknown job: err = %v, want ErrNotFound", err)
	}
	ents, err := os.ReadDir(filepath.Join(h.dir, "jobs", "5", "logs"))
	if err != nil || len(ents) != jobs.KeepRuns {
		t.Errorf("%d files in the log dir (%v), want %d", len(ents), err, jobs.KeepRuns)
	}
}

func TestCloseKillsRunsAndLeaksNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := t.TempDir()
	h := newHarness(t, filepath.Join(dir, "data"), nil)
	jobs.SetCloseGrace(h.r, 100*time.Millisecond)
	started := filepath.Join(dir, "started")
	h.upsert(t, jobs.Job{ID: 1, Version: 1, Cron: "* * * * *", Script: fmt.Appendf(nil, "touch %s\nsleep 60\n", started)})
	h.upsert(t, jobs.Job{ID: 2, Version: 1, Cron: "*/5 * * * *", Script: []byte("true")})
	h.tick(t, 2)
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		_, err := os.Stat(started)
		return err == nil, "the script has not started"
	})

	begin := time.Now()
	if err := h.r.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("Close took %v with a 100ms grace", d)
	}
	select {
	case res := <-h.results:
		if res.ExitCode != -1 || !strings.Contains(res.Error, "shutting down") {
			t.Errorf("exit %d, error %q; want -1 and that the agent is shutting down", res.ExitCode, res.Error)
		}
	default:
		t.Fatal("Close returned before the killed run's result")
	}
	if err := h.r.Upsert(jobs.Job{ID: 3, Version: 1, Cron: "* * * * *"}); !errors.Is(err, jobs.ErrClosed) {
		t.Errorf("Upsert after Close: err = %v, want ErrClosed", err)
	}
	if err := h.r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		n := runtime.NumGoroutine()
		return n <= before, fmt.Sprintf("%d goroutines, %d before New", n, before)
	})
}

// TestHostRootCannotStart runs a job in a host root without /bin/sh (and,
// unless the test runs as root, without the right to chroot): the run
// reports that it could not start and leaves no script behind.
func TestHostRootCannotStart(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, filepath.Join(t.TempDir(), "data"), func(c *jobs.Config) { c.HostRoot = root })
	h.upsert(t, jobs.Job{ID: 1, Version: 1, Cron: "* * * * *", Script: []byte("true")})
	h.tick(t, 1)
	res := h.result(t)
	if res.ExitCode != -1 || !strings.Contains(res.Error, "could not start") || !strings.Contains(res.Error, root) {
		t.Errorf("exit %d, error %q; want -1 and that it could not start in %s", res.ExitCode, res.Error, root)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "tmp")); len(ents) != 0 {
		t.Errorf("%d files left in the host root's /tmp, want the script removed", len(ents))
	}

	// Without /tmp in the host root the script has nowhere to go.
	if err := os.Remove(filepath.Join(root, "tmp")); err != nil {
		t.Fatal(err)
	}
	h.tick(t, 1)
	if res := h.result(t); res.ExitCode != -1 || !strings.Contains(res.Error, "copy script") {
		t.Errorf("exit %d, error %q; want -1 and that the script could not be copied", res.ExitCode, res.Error)
	}
}

func TestDamagedDefinitionIsSkipped(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, nil)
	for id := uint64(1); id <= 2; id++ {
		h.upsert(t, jobs.Job{ID: id, Version: 1, Cron: "* * * * *", Script: []byte("true")})
	}
	if err := h.r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "jobs", "1", "job.json"), []byte("{torn"), 0o600); err != nil {
		t.Fatal(err)
	}

	h = newHarness(t, dir, nil)
	if got := h.r.Jobs(); len(got) != 1 || got[0].ID != 2 {
		t.Errorf("Jobs() = %+v, want job 2 only", got)
	}
	// The server sends job 1 again; it replaces the damaged file.
	h.upsert(t, jobs.Job{ID: 1, Version: 1, Cron: "* * * * *", Script: []byte("true")})
	if got := h.r.Jobs(); len(got) != 2 {
		t.Errorf("Jobs() = %+v, want both", got)
	}
}
