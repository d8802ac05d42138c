package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"outpost/internal/testenv"
	"outpost/protocol"
)

// TestFramesTurnKeepalivesOff: a frame connection goes without TCP
// keepalives (a device on a metered link would pay for each probe); an
// HTTP/1.1 one on the same listener keeps them.
func TestFramesTurnKeepalivesOff(t *testing.T) {
	s, _ := testServer(t)
	accepted := make(chan net.Conn, 2)
	hs, _ := framesServerOf(t, s, s.routes(), func(srv *http.Server) {
		srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			accepted <- c.(*tls.Conn).NetConn()
			return ctx
		}
	})
	for _, tc := range []struct {
		proto     string
		keepalive int
	}{{protocol.ALPN, 0}, {"http/1.1", 1}} {
		c := dialFrames(t, hs, nil, tc.proto)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		// One exchange: the server has set up the connection once answered.
		br := bufio.NewReader(c)
		if tc.proto == protocol.ALPN {
			body, _, _ := protocol.WriteBody(&protocol.SyncRequest{Version: protocol.Version, EnvID: 99, Include: protocol.IncludePing})
			out, _ := protocol.AppendFrame(nil, &protocol.Frame{Path: protocol.SyncPath, Body: body}) // 404, the connection kept
			if _, err := c.Write(out); err != nil {
				t.Fatal(err)
			}
			if _, err := protocol.ReadFrame(br); err != nil {
				t.Fatal(err)
			}
		} else {
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: outpost\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		if got := keepalive(t, <-accepted); got != tc.keepalive {
			t.Errorf("%s: SO_KEEPALIVE %d, want %d", tc.proto, got, tc.keepalive)
		}
	}
}

// keepalive is c's SO_KEEPALIVE.
func keepalive(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	v, serr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) { v, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return v
}

// TestFramesCloseWriteAndLingerSendsNoReset: a connection closed with data
// it has not read sends a RST (Linux), and the peer reads "connection
// reset" in place of the end of the answer; closeWriteAndLinger sends the
// FIN after the answer and reads what is left, so the peer reads the
// answer, then EOF.
func TestFramesCloseWriteAndLingerSendsNoReset(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(make([]byte, 64<<10)); err != nil { // a body the server does not read
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		n := unread(t, srv)
		return n == 64<<10, fmt.Sprintf("%d bytes in the server's receive queue", n)
	})
	if _, err := srv.Write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	closeWriteAndLinger(srv)
	_ = srv.Close()
	got, err := io.ReadAll(c)
	if string(got) != "answer" || err != nil {
		t.Errorf("read %q, %v; want the answer, then EOF", got, err)
	}
}

// unread is how many bytes wait in c's receive queue.
func unread(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int32
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
	}); err != nil {
		t.Fatal(err)
	}
	if errno != 0 {
		t.Fatal(errno)
	}
	return int(n)
}
