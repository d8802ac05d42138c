//go:build !linux

package stacks

import (
	"os"
	"os/exec"
)

// setProcess leaves the helper in the agent's process group: away from
// Linux a cancelled operation kills the helper (exec's default) and its
// children are not signalled, nor is it killed when the agent dies.
func setProcess(*exec.Cmd) {}

// killGroup has no group to kill away from Linux.
func killGroup(*os.Process) {}

// maxRSS is not reported away from Linux.
func maxRSS(*os.ProcessState) (int64, bool) { return 0, false }
