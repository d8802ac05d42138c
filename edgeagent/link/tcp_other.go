//go:build !linux

package link

import "syscall"

// quietAcks saves packets on Linux (tcp_linux.go).
func quietAcks(syscall.RawConn) {}
