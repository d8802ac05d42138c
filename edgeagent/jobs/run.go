package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// waitDelay bounds how long a run waits, once its shell has exited or been
// killed, for output pipes that processes it left behind hold open.
const waitDelay = 2 * time.Second

// execute runs job j as run n and returns its result. ctx is cancelled, with
// a cause, by Remove and Close.
func (r *Runner) execute(ctx context.Context, j Job, n uint64) (res Result) {
	res = Result{JobID: j.ID, Run: n, Started: r.cfg.Clock.Now(), ExitCode: -1}
	start := time.Now()
	log := r.cfg.Log.With("job", j.ID, "run", n)
	log.Debug("edge job run starting")
	defer func() {
		res.Duration = time.Since(start)
		if res.Error != "" {
			log.Warn("edge job run ended", "exit", res.ExitCode, "duration", res.Duration, "err", res.Error)
		} else {
			log.Debug("edge job run ended", "exit", res.ExitCode, "duration", res.Duration)
		}
	}()

	// The number is saved before the run starts, so a crash mid-run cannot
	// make it hand the same number out again.
	if err := r.saveRun(j.ID, n); err != nil {
		res.Error = "could not start: " + err.Error()
		return res
	}
	if err := os.MkdirAll(r.logDir(j.ID), 0o700); err != nil {
		res.Error = "could not start: create log: " + err.Error()
		return res
	}
	out, err := newRingLog(r.logDir(j.ID), n, LogLimit)
	if err != nil {
		res.Error = "could not start: " + err.Error()
		return res
	}
	res.ExitCode, res.Error = r.runScript(ctx, j, n, out)
	if err := out.finish(r.logPath(j.ID, n)); err != nil {
		res.Error = joinProblems(res.Error, err.Error())
	} else if j.Collect {
		if res.Output, err = readTail(r.logPath(j.ID, n), TailSize); err != nil {
			res.Error = joinProblems(res.Error, "read output: "+err.Error())
		}
	}
	if err := r.prune(j.ID); err != nil {
		log.Warn("edge job logs not pruned", "err", err)
	}
	return res
}

// runScript runs j's script with its output to out and returns the exit
// code and, when something went wrong beyond a non-zero exit, what.
func (r *Runner) runScript(ctx context.Context, j Job, n uint64, out io.Writer) (int, string) {
	host, inside, err := r.placeScript(j, n)
	if err != nil {
		return -1, "could not start: " + err.Error()
	}
	defer os.Remove(host)

	ctx, cancel := context.WithTimeoutCause(ctx, r.cfg.Timeout, errTimedOut)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", inside)
	// With Chroot set, the child chroots before it changes directory, so
	// "/" is the host root's.
	cmd.Dir = "/"
	cmd.Env = r.env(j, n)
	cmd.Stdout, cmd.Stderr = out, out // one pipe: the log has them interleaved as written
	// stdin stays /dev/null.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if r.cfg.chroot() {
		cmd.SysProcAttr.Chroot = r.cfg.HostRoot
	}
	// The whole process group, not only the shell: what the script started
	// goes too, unless it left the group (setsid, a daemon).
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		if r.cfg.chroot() {
			return -1, fmt.Sprintf("could not start /bin/sh in host root %s: %v", r.cfg.HostRoot, err)
		}
		return -1, "could not start: " + err.Error()
	}
	err = cmd.Wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case ws.Exited() && errors.Is(err, exec.ErrWaitDelay):
		return ws.ExitStatus(), fmt.Sprintf("a background process kept the output open; stopped reading it %v after the script exited", waitDelay)
	case ws.Exited():
		return ws.ExitStatus(), ""
	case ws.Signaled() && ctx.Err() != nil:
		if cause := context.Cause(ctx); !errors.Is(cause, errTimedOut) {
			return -1, cause.Error()
		}
		return -1, fmt.Sprintf("timed out after %v: process group killed", r.cfg.Timeout)
	case ws.Signaled():
		return -1, "killed by signal " + ws.Signal().String()
	}
	return -1, fmt.Sprintf("wait: %v", err)
}

// placeScript writes j's script where the shell will see it and returns its
// path on this side and in the shell's root. Copying a file, rather than
// piping the script on stdin or passing it with -c, keeps the script's stdin
// its own (a command reading stdin would eat the rest of a piped script) and
// has no argument size limit (128 KiB for one argument on Linux).
func (r *Runner) placeScript(j Job, n uint64) (host, inside string, err error) {
	dir := filepath.Join(r.cfg.Dir, "tmp")
	if r.cfg.chroot() {
		dir = filepath.Join(r.cfg.HostRoot, "tmp")
	}
	// CreateTemp opens with O_EXCL and mode 0600: another user of a shared
	// /tmp can neither read the script nor swap it.
	f, err := os.CreateTemp(dir, fmt.Sprintf("outpost-job-%d-%d-*.sh", j.ID, n))
	if err != nil {
		return "", "", fmt.Errorf("copy script: %w", err)
	}
	_, werr := f.Write(j.Script)
	if err := errors.Join(werr, f.Close()); err != nil {
		_ = os.Remove(f.Name())
		return "", "", fmt.Errorf("copy script: %w", err)
	}
	host, inside = f.Name(), f.Name()
	if r.cfg.chroot() {
		inside = "/tmp/" + filepath.Base(host)
	}
	return host, inside, nil
}

// env is a script's whole environment. The agent's own is not passed on: it
// may hold the edge key.
func (r *Runner) env(j Job, n uint64) []string {
	home := "/root"
	if os.Geteuid() != 0 && !r.cfg.chroot() {
		if h, err := os.UserHomeDir(); err == nil {
			home = h
		}
	}
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + home,
		"SHELL=/bin/sh",
		"OUTPOST_JOB_ID=" + strconv.FormatUint(j.ID, 10),
		"OUTPOST_JOB_VERSION=" + strconv.FormatUint(j.Version, 10),
		"OUTPOST_JOB_RUN=" + strconv.FormatUint(n, 10),
	}
}

func joinProblems(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
