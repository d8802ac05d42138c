package testenv_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"outpost/internal/testenv"
)

// recorder is a testing.TB that records Fatalf and Skipf instead of ending
// the goroutine, so the helpers' failure paths can be checked.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()                      {}
func (r *recorder) Fatalf(f string, args ...any) { r.fatal = fmt.Sprintf(f, args...) }
func (r *recorder) Skipf(f string, args ...any)  { r.skip = fmt.Sprintf(f, args...) }

func TestRequire(t *testing.T) {
	for _, tc := range []struct {
		name, ci, wantFatal, wantSkip string
		err                           error
	}{
		{name: "present", ci: "", err: nil},
		{name: "present under CI", ci: "true", err: nil},
		{name: "missing", ci: "", err: fmt.Errorf("dial unix: no such file"), wantSkip: "no thing at x: dial unix: no such file"},
		{name: "missing under CI", ci: "true", err: fmt.Errorf("boom"), wantFatal: "no thing at x: boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			r := &recorder{TB: t}
			testenv.Require(r, "thing at x", tc.err)
			if !strings.HasPrefix(r.fatal, tc.wantFatal) || (tc.wantFatal == "") != (r.fatal == "") {
				t.Errorf("Fatalf = %q, want prefix %q", r.fatal, tc.wantFatal)
			}
			if r.skip != tc.wantSkip {
				t.Errorf("Skipf = %q, want %q", r.skip, tc.wantSkip)
			}
		})
	}
}

func TestEventually(t *testing.T) {
	var n atomic.Int32
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		return n.Add(1) >= 3, fmt.Sprintf("called %d times", n.Load())
	})
	if got := n.Load(); got != 3 {
		t.Errorf("cond called %d times, want 3", got)
	}

	r := &recorder{TB: t}
	start := time.Now()
	testenv.Eventually(r, 300*time.Millisecond, func() (bool, string) { return false, "still no" })
	if !strings.Contains(r.fatal, "still no") {
		t.Errorf("Fatalf = %q, want the last message", r.fatal)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("gave up after %v, before the timeout", d)
	}
}

func TestBusyboxRootfs(t *testing.T) {
	a, err := testenv.BusyboxRootfs(map[string][]byte{"/app/conf/version": []byte("1\n")})
	if errors.Is(err, testenv.ErrNoBusybox) {
		testenv.Require(t, "busybox-static", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	b, err := testenv.BusyboxRootfs(map[string][]byte{"app/conf/version": []byte("1\n")})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("same contents gave different tars")
	}

	got := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(a))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		if got[h.Name] != nil {
			t.Errorf("%s twice in the tar", h.Name)
		}
		got[h.Name] = h
	}
	for _, want := range []struct {
		name string
		typ  byte
		mode int64
	}{
		{"bin/busybox", tar.TypeReg, 0o755},
		{"bin/sh", tar.TypeSymlink, 0o777},
		{"bin/sleep", tar.TypeSymlink, 0o777},
		{"bin/httpd", tar.TypeSymlink, 0o777},
		{"tmp/", tar.TypeDir, 0o1777},
		{"app/", tar.TypeDir, 0o755},
		{"app/conf/", tar.TypeDir, 0o755},
		{"app/conf/version", tar.TypeReg, 0o644},
		{"etc/passwd", tar.TypeReg, 0o644},
	} {
		h := got[want.name]
		if h == nil {
			t.Errorf("tar lacks %s", want.name)
			continue
		}
		if h.Typeflag != want.typ || h.Mode != want.mode {
			t.Errorf("%s: type %c mode %o, want %c %o", want.name, h.Typeflag, h.Mode, want.typ, want.mode)
		}
	}
}
