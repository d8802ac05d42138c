package jobs

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/jonboulle/clockwork"
)

// Bounds on what a run leaves behind.
const (
	TailSize = 4 << 10 // bytes of output a Result carries when Job.Collect
	LogLimit = 1 << 20 // bytes of output a run's log keeps: the tail when longer
	KeepRuns = 5       // logs kept per job: the latest runs
)

// Sentinel errors. Each is wrapped with the operation and the job ID.
var (
	// ErrInvalid is a job definition the runner refuses (a bad cron
	// expression); the message names the field and the value.
	ErrInvalid = errors.New("invalid job definition")
	// ErrNotFound is a job the runner does not hold, or a run whose log is
	// gone (only the last KeepRuns are kept) or never was.
	ErrNotFound = errors.New("not found")
	// ErrRunning is a run whose log is asked for before it ended: the log is
	// complete, and readable, once the run ends.
	ErrRunning = errors.New("run still going; its log is readable when it ends")
	// ErrClosed is a call on a closed Runner.
	ErrClosed = errors.New("job runner closed")
)

// Job is an edge job as the server defines it.
type Job struct {
	ID, Version uint64
	// Cron is a standard 5-field expression (minute hour day-of-month month
	// day-of-week), or 6 fields with seconds first, or a descriptor such as
	// "@hourly". A "CRON_TZ=Zone " prefix pins its time zone.
	Cron   string
	Script []byte // run by /bin/sh
	// Collect puts the output tail in each Result; without it a Result has
	// the exit code and duration only, and the logs stay on the device until
	// asked for with Runner.Logs.
	Collect bool
}

// Result is what one run of a job did.
type Result struct {
	JobID, Run uint64 // Run counts up per job from 1 and is never reused on this device
	Started    time.Time
	Duration   time.Duration
	// ExitCode is the script's exit status, or -1 when it could not start or
	// was killed (by the timeout, Remove, Close or a signal); Error says which.
	ExitCode int
	Error    string
	Output   []byte // the last TailSize bytes of stdout and stderr when Job.Collect, else nil
}

// Config is what New needs. Zero fields take the defaults below.
type Config struct {
	Dir string // the agent's data dir for jobs (definitions, run counters, logs); required
	// HostRoot is where the device's root file system is. "/" runs scripts
	// with the agent's own /bin/sh; any other directory is chrooted into
	// first, which needs root.
	HostRoot string
	Timeout  time.Duration // per run; the run's whole process group is killed when it passes
	// OnResult is called after each run, from the run's goroutine, in run
	// order for each job, and before Remove of that job or Close returns.
	// It should return promptly and must not call Upsert, Remove or Close.
	// Nil drops results (the logs remain).
	OnResult func(Result)
	Log      *slog.Logger
	// Clock drives the schedule and Result.Started. Durations and the
	// timeout are real time: a fake clock does not make a script faster.
	Clock clockwork.Clock
}

// Defaults, in one place.
const (
	DefaultHostRoot = "/"
	DefaultTimeout  = time.Hour
	// closeGrace is how long Close waits for running scripts before it kills
	// them: long enough for a script that is about to end, short enough for
	// a container's stop timeout (10 s by default).
	closeGrace = 5 * time.Second
)

// withDefaults fills zero fields and reports every problem at once.
func (c Config) withDefaults() (Config, error) {
	if c.HostRoot == "" {
		c.HostRoot = DefaultHostRoot
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("empty Dir: set the agent's data dir for jobs"))
	}
	if !filepath.IsAbs(c.HostRoot) {
		errs = append(errs, fmt.Errorf("relative HostRoot=%q: use an absolute path (\"/\" runs scripts without chroot)", c.HostRoot))
	} else if c.HostRoot = filepath.Clean(c.HostRoot); c.chroot() {
		if fi, err := os.Stat(c.HostRoot); err != nil || !fi.IsDir() {
			errs = append(errs, fmt.Errorf("HostRoot=%q is not a directory: mount the device's root file system there, or use \"/\"", c.HostRoot))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("negative Timeout=%v: use a positive duration, or 0 for the default %v", c.Timeout, DefaultTimeout))
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("jobs config: %w", errors.Join(errs...))
	}
	return c, nil
}

// chroot reports whether runs are chrooted into HostRoot.
func (c Config) chroot() bool { return c.HostRoot != "/" }

// cronSeconds validates expr and reports whether it has a seconds field.
// The error names the expression and says what is expected.
func cronSeconds(expr string) (bool, error) {
	const want = "use 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or a descriptor such as @hourly"
	fields := strings.Fields(expr)
	if len(fields) > 0 && (strings.HasPrefix(fields[0], "TZ=") || strings.HasPrefix(fields[0], "CRON_TZ=")) {
		fields = fields[1:]
	}
	var seconds bool
	switch {
	case len(fields) == 0:
		return false, fmt.Errorf("%w: cron %q is empty; %s", ErrInvalid, expr, want)
	case strings.HasPrefix(fields[0], "@"):
	case len(fields) == 5:
	case len(fields) == 6:
		seconds = true
	default:
		return false, fmt.Errorf("%w: cron %q has %d fields; %s", ErrInvalid, expr, len(fields), want)
	}
	if err := gocron.NewDefaultCron(seconds).IsValid(expr, time.Local, time.Now()); err != nil {
		return false, fmt.Errorf("%w: cron %q: %s; %s", ErrInvalid, expr, cronReason(err), want)
	}
	return seconds, nil
}

// cronReason is the parser's own words from a gocron validation error, which
// joins gocron's generic sentinel to them.
func cronReason(err error) string {
	if errors.Is(err, gocron.ErrCronJobInvalid) {
		return "it matches no date"
	}
	var parts []string
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !errors.Is(e, gocron.ErrCronJobParse) {
				parts = append(parts, e.Error())
			}
		}
	}
	if len(parts) == 0 {
		return err.Error()
	}
	return strings.Join(parts, "; ")
}

// clone returns j with its own copy of the script.
func (j Job) clone() Job {
	if j.Script != nil {
		j.Script = append([]byte(nil), j.Script...)
	}
	return j
}
