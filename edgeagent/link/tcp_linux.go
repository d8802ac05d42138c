package link

import (
	"syscall"
)

// quietAcks asks the kernel to delay its ACK of the next data on c (turns
// TCP quick ACKs off), so it leaves with the agent's next packet instead of
// in one of its own: 52 bytes each on a metered link. Set before connect,
// it also folds the handshake's last ACK into the ClientHello. Linux only;
// a no-op elsewhere.
func quietAcks(c syscall.RawConn) {
	_ = c.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 0)
	})
}
