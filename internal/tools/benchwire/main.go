// Command benchwire measures what the edge exchanges cost at the layer a
// carrier bills. For Outpost and for the same exchanges done the Portainer
// way (JSON + gzip + JSON Patch over HTTPS with ordinary headers, the bodies
// `make bench-protocol` compares), it counts, side by side:
//
//   - socket bytes: TLS records both ways, as the client's socket moves them
//     (HTTP and TLS framing, handshakes and closes included);
//   - IP bytes: every IP packet of the server's port both ways, TCP/IP
//     headers, ACKs, SYNs, FINs and keepalive probes included, from the
//     kernel's own nftables counters.
//
// It runs as root:
//
//	go run ./internal/tools/benchwire [-gap 60s] [-n 10]
//
// It makes two network namespaces joined by a veth pair (MTU 1500,
// segmentation offloads off, so each packet is counted as it would travel),
// and runs itself in each. The server side runs the real server
// (server.Run) and a Portainer-way endpoint. The device side runs the
// agent's real client (edgeagent/link, what the agent's sync loop calls)
// with the agent's own identity code (edgeagent/ident), and a Portainer-way
// client, and counts each server port in its own namespace. The
// namespaces are deleted at the end.
//
// Each kind of exchange is measured for real: an idle exchange on a kept
// connection, one container stopped, a reconnect (resumed TLS handshake,
// ping and command pull, close), and an idle connection held for -gap of
// real time (keepalive probes, if any, are counted as they happen). The
// per-day and per-month rows are composed from those measurements and the
// schedule, not run in real time; the output says how.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

// Ports on the server namespace's address.
const (
	outpostPort   = 9443
	portainerPort = 9444
	tunnelPort    = 8000
)

func main() {
	role := flag.String("role", "", "internal: server or device (the tool runs itself in each namespace)")
	dir := flag.String("dir", "", "internal: server data directory")
	addr := flag.String("addr", "", "internal: server address")
	password := flag.String("password", "", "internal: administrator password")
	gap := flag.Duration("gap", 60*time.Second, "how long to hold the kept connections idle, in real time (one interval of Portainer's defaults)")
	n := flag.Int("n", 10, "idle exchanges averaged per measurement")
	captures := flag.String("captures", "testdata/docker", "directory of docker-*.json captures")
	flag.Parse()
	var err error
	switch *role {
	case "":
		err = runParent(options{gap: *gap, n: *n, captures: *captures})
	case "server":
		err = runServer(*dir, *addr, *password)
	case "device":
		err = runDevice(*addr, *password, options{gap: *gap, n: *n, captures: *captures})
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchwire: %v\n", err)
		os.Exit(1)
	}
}

// options are the measurement's settings, passed on to the device side.
type options struct {
	gap      time.Duration
	n        int
	captures string
}

func (o options) args() []string {
	return []string{"-gap", o.gap.String(), "-n", fmt.Sprint(o.n), "-captures", o.captures}
}
