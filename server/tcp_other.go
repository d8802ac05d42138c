//go:build !linux

package server

import "net"

// corkUntilClose saves a packet on Linux (tcp_linux.go).
func corkUntilClose(net.Conn) {}
