package stacks

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcess starts the helper in a process group of its own, which a
// cancelled operation signals as a whole: SIGTERM, then SIGKILL when
// WaitDelay runs out. Pdeathsig kills the helper (its process only) when
// the agent dies.
func setProcess(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return signalGroup(cmd.Process, syscall.SIGTERM) }
}

// killGroup kills what is left of the helper's process group.
func killGroup(p *os.Process) { _ = signalGroup(p, syscall.SIGKILL) }

// signalGroup signals the process group p leads, or p alone if it left
// the group (a helper may make its own).
func signalGroup(p *os.Process, sig syscall.Signal) error {
	if err := syscall.Kill(-p.Pid, sig); err == nil {
		return nil
	}
	return p.Signal(sig)
}

// maxRSS is the helper's peak resident memory in KiB (Linux reports KiB).
func maxRSS(ps *os.ProcessState) (int64, bool) {
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0, false
	}
	return ru.Maxrss, true
}
