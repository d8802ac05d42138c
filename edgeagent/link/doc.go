// Package link is a device's link to its server: the edge client that
// makes each exchange over one TLS connection, with edge frames
// (protocol.ALPN) where the server speaks them and HTTP/1.1 where it does
// not, kept between exchanges only while the next one is near. The agent's
// sync loop uses it, and so do the tools that measure it: the fleet
// simulator (sim) and internal/tools/benchwire.
//
// # Caveats
//
//   - A Client is not safe for concurrent use: one exchange at a time.
//   - TCP keepalives are off: a connection held idle costs nothing on the
//     wire, and one the path forgot is found out by the next exchange
//     (Client checks a kept connection before writing to it).
//   - The socket options that save packets (quick ACKs off) are Linux
//     only; elsewhere they do nothing.
package link
