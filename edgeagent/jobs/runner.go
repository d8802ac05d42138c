package jobs

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/google/uuid"

	"outpost/internal/atomicfile"
)

// Causes a run's context is cancelled with; run turns them into Result.Error.
var (
	errTimedOut = errors.New("timed out")
	errRemoved  = errors.New("killed: the job was removed")
	errClosing  = errors.New("killed: the agent is shutting down")
)

// Runner schedules edge jobs and runs them.
type Runner struct {
	cfg   Config
	sched gocron.Scheduler
	grace time.Duration // how long Close waits for running scripts

	ctx    context.Context // parent of every run; cancelled when Close stops waiting
	cancel context.CancelCauseFunc
	active sync.WaitGroup // runs in flight, their OnResult included

	// opMu serializes Upsert, Remove and the end of Close, so the disk and
	// the scheduler change together, one job change at a time. It is held
	// across file writes and scheduler calls; runs never take it.
	opMu sync.Mutex

	// mu guards jobs, everything in the entries, and closed. It is held for
	// map and field updates only: never across I/O, a scheduler call or a
	// callback.
	mu     sync.Mutex
	jobs   map[uint64]*entry
	closed bool
}

// entry is a job the runner holds.
type entry struct {
	job     Job
	lastRun uint64 // the last run number handed out
	run     *run   // the run in progress, nil between runs
	last    *run   // the latest run, going, reporting or done
}

// run is one run of a job.
type run struct {
	n      uint64
	cancel context.CancelCauseFunc
	// done is closed once OnResult returned for this run and every earlier
	// run of the job, so waiting for the latest run's done waits for all.
	done chan struct{}
	prev *run // the run before, until this one has waited for it
}

// New loads the job definitions saved in cfg.Dir and schedules them again,
// so an agent restart keeps its jobs. A saved job that cannot be read is
// logged and skipped, not fatal: the server sends it again.
func New(cfg Config) (*Runner, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	for _, d := range []string{cfg.Dir, filepath.Join(cfg.Dir, "jobs"), filepath.Join(cfg.Dir, "seq"), filepath.Join(cfg.Dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("new job runner: %w", err)
		}
	}
	// Scripts of runs the agent was stopped in, and temp files of writes it
	// was stopped in.
	if err := clearDir(filepath.Join(cfg.Dir, "tmp")); err != nil {
		return nil, fmt.Errorf("new job runner: %w", err)
	}
	if err := removeHidden(filepath.Join(cfg.Dir, "seq")); err != nil {
		return nil, fmt.Errorf("new job runner: %w", err)
	}
	sched, err := gocron.NewScheduler(
		gocron.WithClock(cfg.Clock),
		gocron.WithLogger(cfg.Log.With("component", "gocron")),
		// Close lets runs end before it stops the scheduler, so this only
		// bounds gocron's own wind-down.
		gocron.WithStopTimeout(time.Second),
	)
	if err != nil {
		return nil, fmt.Errorf("new job runner: scheduler: %w", err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	r := &Runner{cfg: cfg, sched: sched, grace: closeGrace, ctx: ctx, cancel: cancel, jobs: map[uint64]*entry{}}
	sched.Start()

	defs, errs := r.loadDefinitions()
	for _, err := range errs {
		cfg.Log.Error("edge job not loaded", "err", err)
	}
	for _, j := range defs {
		if err := r.add(j); err != nil {
			cfg.Log.Error("edge job not loaded", "job", j.ID, "err", err)
		}
	}
	return r, nil
}

// add schedules a job loaded from disk.
func (r *Runner) add(j Job) error {
	seconds, err := cronSeconds(j.Cron)
	if err != nil {
		return err
	}
	for _, d := range []string{r.jobDir(j.ID), r.logDir(j.ID)} {
		if err := removeHidden(d); err != nil {
			return err
		}
	}
	last, err := r.lastRun(j.ID)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.jobs[j.ID] = &entry{job: j, lastRun: last}
	r.mu.Unlock()
	if err := r.schedule(j, seconds); err != nil {
		r.mu.Lock()
		delete(r.jobs, j.ID)
		r.mu.Unlock()
		return err
	}
	return nil
}

// Upsert saves j, then schedules it in place of the version held. A Version
// lower than or equal to the one held is a no-op. A run of the old version
// that is still going goes on, and ticks of the new one are skipped until it
// ends.
func (r *Runner) Upsert(j Job) error {
	seconds, err := cronSeconds(j.Cron)
	if err != nil {
		return fmt.Errorf("upsert job %d: %w", j.ID, err)
	}
	j = j.clone()

	r.opMu.Lock()
	defer r.opMu.Unlock()
	r.mu.Lock()
	closed := r.closed
	e := r.jobs[j.ID]
	held := e != nil && j.Version <= e.job.Version
	r.mu.Unlock()
	switch {
	case closed:
		return fmt.Errorf("upsert job %d: %w", j.ID, ErrClosed)
	case held:
		return nil
	}

	if err := r.saveDefinition(j); err != nil {
		return fmt.Errorf("upsert job %d: %w", j.ID, err)
	}
	if e == nil {
		last, err := r.lastRun(j.ID)
		if err != nil {
			return fmt.Errorf("upsert job %d: %w", j.ID, err)
		}
		e = &entry{lastRun: last}
	}
	r.mu.Lock()
	e.job = j
	r.jobs[j.ID] = e
	r.mu.Unlock()
	if err := r.schedule(j, seconds); err != nil {
		return fmt.Errorf("upsert job %d: %w", j.ID, err)
	}
	return nil
}

// schedule adds or replaces j's schedule. gocron's Update removes the old
// schedule and adds the new under the same ID; a run of the old version
// still holds the entry's run slot, so ticks of the new wait for its end.
func (r *Runner) schedule(j Job, seconds bool) error {
	_, err := r.sched.Update(schedID(j.ID),
		gocron.CronJob(j.Cron, seconds),
		gocron.NewTask(r.tick, j.ID),
		gocron.WithName(fmt.Sprintf("edge job %d", j.ID)),
		// No gocron.WithSingletonMode: tick keeps runs from overlapping.
	)
	if err != nil {
		return fmt.Errorf("schedule: %w", err)
	}
	return nil
}

// schedID is gocron's ID of job id: fixed per job, so Update replaces the
// schedule in place.
func schedID(id uint64) uuid.UUID {
	var u uuid.UUID
	copy(u[:8], "outpost.")
	binary.BigEndian.PutUint64(u[8:], id)
	return u
}

// Remove unschedules job id, kills its run if one is going (it reports a
// Result saying so) and deletes its definition and logs. Its run counter is
// kept, so a job added again under the same ID goes on counting. An unknown
// id is not an error.
func (r *Runner) Remove(id uint64) error {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return fmt.Errorf("remove job %d: %w", id, ErrClosed)
	}
	e := r.jobs[id]
	delete(r.jobs, id) // from here on ticks of id do nothing
	var going, last *run
	if e != nil {
		going, last = e.run, e.last
	}
	r.mu.Unlock()

	if e != nil {
		if err := r.sched.RemoveJob(schedID(id)); err != nil && !errors.Is(err, gocron.ErrJobNotFound) {
			return fmt.Errorf("remove job %d: unschedule: %w", id, err)
		}
	}
	if going != nil {
		going.cancel(errRemoved)
	}
	if last != nil {
		<-last.done
	}
	// The definition first: a crash after it leaves logs New clears, never
	// a job that comes back.
	if err := os.Remove(r.defPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove job %d: %w", id, err)
	}
	if err := os.RemoveAll(r.jobDir(id)); err != nil {
		return fmt.Errorf("remove job %d: %w", id, err)
	}
	if err := atomicfile.SyncDir(filepath.Join(r.cfg.Dir, "jobs")); err != nil {
		return fmt.Errorf("remove job %d: %w", id, err)
	}
	return nil
}

// Logs returns the log of run n of job id, or of its latest finished run
// when n is 0. A log holds at most LogLimit bytes, the tail of the output;
// the last KeepRuns runs of a job have one.
func (r *Runner) Logs(id uint64, n uint64) ([]byte, error) {
	r.mu.Lock()
	e := r.jobs[id]
	var going uint64
	if e != nil && e.run != nil {
		going = e.run.n
	}
	r.mu.Unlock()
	if e == nil {
		return nil, fmt.Errorf("logs of job %d: %w", id, ErrNotFound)
	}
	if n == 0 {
		runs, err := r.runs(id)
		if err != nil {
			return nil, fmt.Errorf("logs of job %d: %w", id, err)
		}
		if len(runs) == 0 {
			return nil, fmt.Errorf("logs of job %d: no run has ended yet: %w", id, ErrNotFound)
		}
		n = runs[len(runs)-1]
	}
	b, err := readLog(r.logPath(id, n))
	switch {
	case errors.Is(err, os.ErrNotExist) && n == going:
		return nil, fmt.Errorf("logs of job %d run %d: %w", id, n, ErrRunning)
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("logs of job %d run %d: only the last %d runs are kept: %w", id, n, KeepRuns, ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("logs of job %d run %d: %w", id, n, err)
	}
	return b, nil
}

// Jobs returns the jobs held, by ID.
func (r *Runner) Jobs() []Job {
	r.mu.Lock()
	out := make([]Job, 0, len(r.jobs))
	for _, e := range r.jobs {
		out = append(out, e.job.clone())
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b Job) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Close stops new runs, waits a short grace for running scripts, kills the
// rest (each reports a Result saying so) and stops the scheduler. No
// OnResult call happens after it returns.
func (r *Runner) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true // from here on ticks do nothing and active only goes down
	r.mu.Unlock()

	ended := make(chan struct{})
	go func() { r.active.Wait(); close(ended) }()
	grace := time.NewTimer(r.grace)
	select {
	case <-ended:
	case <-grace.C:
		r.cancel(errClosing)
		<-ended
	}
	grace.Stop()
	r.cancel(errClosing)

	r.opMu.Lock()
	defer r.opMu.Unlock()
	if err := r.sched.Shutdown(); err != nil {
		return fmt.Errorf("close job runner: %w", err)
	}
	return nil
}

// tick is the scheduled task of job id: it starts a run unless the runner is
// closed, the job was removed (gocron's removal is asynchronous, this check
// is not) or a run of it is still going.
//
// This check, not gocron's singleton mode, keeps runs of a job from
// overlapping: gocron frees its singleton slot only once the task has
// returned, after OnResult, so a tick right after a result would be dropped
// at random. Here the slot is freed when the script has ended and its log is
// saved; OnResult calls stay in run order through the chain of done.
func (r *Runner) tick(id uint64) {
	r.mu.Lock()
	e := r.jobs[id]
	if r.closed || e == nil {
		r.mu.Unlock()
		return
	}
	if e.run != nil {
		n := e.run.n
		r.mu.Unlock()
		r.cfg.Log.Warn("edge job still running; tick skipped", "job", id, "run", n)
		return
	}
	ctx, cancel := context.WithCancelCause(r.ctx)
	e.lastRun++
	cur := &run{n: e.lastRun, cancel: cancel, done: make(chan struct{}), prev: e.last}
	e.run, e.last = cur, cur
	j := e.job
	r.active.Add(1)
	r.mu.Unlock()

	defer r.active.Done()
	res := r.execute(ctx, j, cur.n)
	cancel(nil)
	r.mu.Lock()
	e.run = nil
	r.mu.Unlock()

	if cur.prev != nil {
		<-cur.prev.done
		cur.prev = nil // keep the chain two long
	}
	if r.cfg.OnResult != nil {
		r.cfg.OnResult(res)
	}
	close(cur.done)
}

// clearDir removes everything in dir.
func clearDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, ent := range ents {
		if err := os.RemoveAll(filepath.Join(dir, ent.Name())); err != nil {
			return err
		}
	}
	return nil
}
