package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"outpost/internal/atomicfile"
)

// Layout of Config.Dir:
//
//	jobs/<id>/job.json    the definition
//	jobs/<id>/logs/<n>.log   the log of run n (the last KeepRuns)
//	seq/<id>              the last run number handed out; kept after Remove
//	tmp/                  scripts of running runs when HostRoot is "/"
func (r *Runner) jobDir(id uint64) string {
	return filepath.Join(r.cfg.Dir, "jobs", strconv.FormatUint(id, 10))
}
func (r *Runner) defPath(id uint64) string { return filepath.Join(r.jobDir(id), "job.json") }
func (r *Runner) logDir(id uint64) string  { return filepath.Join(r.jobDir(id), "logs") }
func (r *Runner) logPath(id, run uint64) string {
	return filepath.Join(r.logDir(id), strconv.FormatUint(run, 10)+".log")
}
func (r *Runner) seqPath(id uint64) string {
	return filepath.Join(r.cfg.Dir, "seq", strconv.FormatUint(id, 10))
}

// definition is a Job on disk. Its own type, so renaming a Go field cannot
// change the file format.
type definition struct {
	ID      uint64 `json:"id"`
	Version uint64 `json:"version"`
	Cron    string `json:"cron"`
	Collect bool   `json:"collect"`
	Script  []byte `json:"script"`
}

func (r *Runner) saveDefinition(j Job) error {
	b, err := json.Marshal(definition{ID: j.ID, Version: j.Version, Cron: j.Cron, Collect: j.Collect, Script: j.Script})
	if err != nil {
		return fmt.Errorf("save definition: %w", err)
	}
	if err := os.MkdirAll(r.jobDir(j.ID), 0o700); err != nil {
		return fmt.Errorf("save definition: %w", err)
	}
	if err := writeFileAtomic(r.defPath(j.ID), b); err != nil {
		return fmt.Errorf("save definition: %w", err)
	}
	return nil
}

// loadDefinitions reads every saved job. A job that cannot be read is
// reported in errs and left on disk; the others load.
func (r *Runner) loadDefinitions() (jobs []Job, errs []error) {
	ents, err := os.ReadDir(filepath.Join(r.cfg.Dir, "jobs"))
	if err != nil {
		return nil, []error{fmt.Errorf("load definitions: %w", err)}
	}
	for _, ent := range ents {
		id, err := strconv.ParseUint(ent.Name(), 10, 64)
		if err != nil || !ent.IsDir() {
			continue
		}
		b, err := os.ReadFile(r.defPath(id))
		if errors.Is(err, os.ErrNotExist) {
			// Remove deletes the definition first: the rest is leftovers.
			if err := os.RemoveAll(r.jobDir(id)); err != nil {
				errs = append(errs, fmt.Errorf("load job %d: remove leftovers: %w", id, err))
			}
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("load job %d: %w", id, err))
			continue
		}
		var d definition
		if err := json.Unmarshal(b, &d); err != nil {
			errs = append(errs, fmt.Errorf("load job %d: %s: %w", id, r.defPath(id), err))
			continue
		}
		if d.ID != id {
			errs = append(errs, fmt.Errorf("load job %d: %s holds job %d", id, r.defPath(id), d.ID))
			continue
		}
		jobs = append(jobs, Job{ID: d.ID, Version: d.Version, Cron: d.Cron, Collect: d.Collect, Script: d.Script})
	}
	return jobs, errs
}

// lastRun returns the last run number handed out for job id: the saved
// counter, or the newest log if that is higher (the counter is saved before
// each run, so it is only lower if the file was damaged or lost).
func (r *Runner) lastRun(id uint64) (uint64, error) {
	var n uint64
	b, err := os.ReadFile(r.seqPath(id))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return 0, fmt.Errorf("run counter of job %d: %w", id, err)
	default:
		if n, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err != nil {
			r.cfg.Log.Warn("edge job run counter damaged; continuing after the newest log", "job", id, "path", r.seqPath(id), "err", err)
		}
	}
	if runs, _ := r.runs(id); len(runs) > 0 && runs[len(runs)-1] > n {
		n = runs[len(runs)-1]
	}
	return n, nil
}

func (r *Runner) saveRun(id, n uint64) error {
	if err := writeFileAtomic(r.seqPath(id), []byte(strconv.FormatUint(n, 10)+"\n")); err != nil {
		return fmt.Errorf("save run counter: %w", err)
	}
	return nil
}

// runs lists the run numbers job id has logs of, oldest first.
func (r *Runner) runs(id uint64) ([]uint64, error) {
	ents, err := os.ReadDir(r.logDir(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var runs []uint64
	for _, ent := range ents {
		name, ok := strings.CutSuffix(ent.Name(), ".log")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(name, 10, 64); err == nil {
			runs = append(runs, n)
		}
	}
	slices.Sort(runs)
	return runs, nil
}

// prune removes all but the last KeepRuns logs of job id.
func (r *Runner) prune(id uint64) error {
	runs, err := r.runs(id)
	if err != nil {
		return fmt.Errorf("prune logs: %w", err)
	}
	for len(runs) > KeepRuns {
		if err := os.Remove(r.logPath(id, runs[0])); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("prune logs: %w", err)
		}
		runs = runs[1:]
	}
	return nil
}

// removeHidden removes the files whose name starts with a dot in dir: temp
// files of writes, and ring files of runs, the agent was stopped in (a ring's
// layout died with the agent, and no Result was made of it).
func removeHidden(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("clean %s: %w", dir, err)
	}
	for _, ent := range ents {
		if strings.HasPrefix(ent.Name(), ".") && !ent.IsDir() {
			if err := os.Remove(filepath.Join(dir, ent.Name())); err != nil {
				return fmt.Errorf("clean %s: %w", dir, err)
			}
		}
	}
	return nil
}

// readLog returns a finished log, at most LogLimit bytes whatever the file.
func readLog(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, LogLimit))
}

// readTail returns the last n bytes of the file at path.
func readTail(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(fi.Size()-n, 0)
	b := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
		return nil, err
	}
	return b, nil
}

// writeFileAtomic replaces path with b, mode 0600; a crash leaves the old
// file or the new, never a torn one.
func writeFileAtomic(path string, b []byte) error { return atomicfile.Write(path, b, 0o600) }
