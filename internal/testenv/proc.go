package testenv

import (
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// GoBuild builds package pkg of the module into out, statically
// (CGO_ENABLED=0), as the images and devices get it.
func GoBuild(out, pkg string) ([]byte, error) {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd.CombinedOutput()
}

// Proc is a started process whose output is kept for the failure report.
type Proc struct {
	Cmd *exec.Cmd
	Out *Buffer
}

// Start starts bin with args and the environment plus env. It stops at the
// test's end (Stop), and its output goes into the log when the test failed.
func Start(t testing.TB, name string, env []string, bin string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Cmd: exec.Command(bin, args...), Out: &Buffer{}}
	p.Cmd.Env = append(os.Environ(), env...)
	p.Cmd.Stdout, p.Cmd.Stderr = p.Out, p.Out
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, p.Out.String())
		}
	})
	return p
}

// Stop ends the process, unless it ended already: SIGTERM, then SIGKILL
// after 10 s.
func (p *Proc) Stop() {
	if p.Cmd.ProcessState != nil {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.Cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-done
	}
}

// FreeAddr returns a loopback address with a port nothing listens on now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
