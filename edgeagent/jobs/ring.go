package jobs

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"outpost/internal/atomicfile"
)

// ringLog streams a run's output to a file that never grows past limit
// bytes: once full it wraps and overwrites the oldest bytes, so it holds the
// tail. Memory use is constant whatever the script prints. finish turns it
// into the run's log, oldest byte first.
//
// Write is called by one goroutine at a time (exec.Cmd's copier, with stdout
// and stderr on one pipe), finish after it has stopped; no lock is needed.
type ringLog struct {
	f     *os.File
	limit int64
	pos   int64 // where the next byte goes
	total int64 // bytes written in all
	err   error // the first write error
}

// newRingLog creates the ring file in dir, mode 0600, hidden (a leading dot)
// until finish renames it.
func newRingLog(dir string, run uint64, limit int64) (*ringLog, error) {
	f, err := os.CreateTemp(dir, fmt.Sprintf(".%d-*.ring", run))
	if err != nil {
		return nil, fmt.Errorf("create log: %w", err)
	}
	return &ringLog{f: f, limit: limit}, nil
}

// Write always reports success, so the script is never blocked or sent
// SIGPIPE for a full disk; the first failure is kept for finish.
func (w *ringLog) Write(p []byte) (int, error) {
	n := len(p)
	w.total += int64(n)
	if int64(len(p)) > w.limit {
		// Only the last limit bytes can survive; they land where a byte-by-
		// byte write would have put them.
		skip := int64(len(p)) - w.limit
		w.pos = (w.pos + skip) % w.limit
		p = p[skip:]
	}
	for len(p) > 0 && w.err == nil {
		k := min(int64(len(p)), w.limit-w.pos)
		if _, err := w.f.WriteAt(p[:k], w.pos); err != nil {
			w.err = err
		}
		w.pos = (w.pos + k) % w.limit
		p = p[k:]
	}
	return n, nil
}

// finish writes the log, oldest byte first, to path (by rename) and removes
// the ring file. It reports a write error from the run too.
func (w *ringLog) finish(path string) error {
	defer os.Remove(w.f.Name()) // fails harmlessly once renamed
	if w.err != nil {
		w.f.Close()
		return fmt.Errorf("write log: %w", w.err)
	}
	if w.total <= w.limit {
		// Never wrapped: the ring file is the log.
		if err := atomicfile.Commit(w.f, path); err != nil {
			return fmt.Errorf("save log: %w", err)
		}
		return nil
	}
	defer w.f.Close()
	out, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("save log: %w", err)
	}
	defer os.Remove(out.Name())
	// The oldest byte is at pos. Copying file to file keeps memory constant.
	if _, err := io.Copy(out, io.NewSectionReader(w.f, w.pos, w.limit-w.pos)); err != nil {
		out.Close()
		return fmt.Errorf("save log: %w", err)
	}
	if _, err := io.Copy(out, io.NewSectionReader(w.f, 0, w.pos)); err != nil {
		out.Close()
		return fmt.Errorf("save log: %w", err)
	}
	if err := atomicfile.Commit(out, path); err != nil {
		return fmt.Errorf("save log: %w", err)
	}
	return nil
}
