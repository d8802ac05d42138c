// Package sim is the fleet simulator behind outpost-sim (issue 13): a fleet
// of simulated async devices, each speaking the real protocol to a running
// server, with the measurements of what the fleet cost it.
//
// Each device has its own Ed25519 identity key, X25519 key, edge ID, proof
// counter, MAC key after its first contact, snapshot sequence and engine,
// and proves itself with the agent's own edgeagent/ident; its schedule is
// the agent's scheduler.Plan (merged kinds, ±10% jitter, backoff), its
// snapshots the agent's (a full snapshot, then keyed deltas from the acked
// base with snapshot.Compute). Its engine is a real capture of testdata/docker
// with names and IDs made its own; a configurable fraction of its
// containers stop or start each hour. It keeps one TLS connection alive,
// from its own 127.0.0.x source address (PerAddress devices per address).
//
// Onboarding is through the REST API: environments are pre-staged in bulk
// (POST /api/environments/bulk) and each device binds with its edge key's
// enrollment secret. Commands (container.restart of one of the device's
// containers) are queued through the API at a configurable rate; devices
// ack them ok at their next exchange and run nothing.
//
// The report (Report) has exchanges per second, latency per exchange kind,
// errors by kind, the server's CPU, RSS and goroutines (/proc and its
// /metrics), bytes per exchange and per device and day, and command
// delivery; as JSON, and as an HTML page with SVG charts over time.
//
// # Caveats
//
//   - sim reaches the server over HTTP only: it imports none of server,
//     server/store, web or edgeagent (internal/deps checks it).
//   - Latencies are measured by the simulator, on the same machine as the
//     server: the simulator's own CPU use is in them.
//   - Socket bytes are TLS records (HTTP headers, TLS framing, handshakes);
//     TCP/IP headers, ACKs and keepalives are not counted.
//   - Per-day bytes scale the run's mean exchange after first contact to
//     one exchange per frequency: a short run has fewer deltas per exchange
//     than a day would.
//   - CPU times are read in USER_HZ of 100.
//   - A device starts on its environment's frequencies (the agent starts on
//     scheduler.Defaults until its first answer), after a random delay
//     within Config.Ramp.
//
// # Not done yet
//
//   - TODO: standard-mode devices (/edge/v1/poll), idle tunnels held open
//     and tunnels carrying traffic.
//   - TODO: edge stacks targeting groups of thousands (stack commands,
//     blobs, stack statuses), and edge jobs.
//   - TODO: onboarding through the waiting room with trust by rule.
//   - TODO: the 100,000-device standard scenario of issue 13 and its
//     targets (p99 ≤ 100 ms, RSS ≤ 2 GiB, delivery within one interval + 5
//     s); raising N until the server breaks.
//   - TODO: IP-layer bytes (kernel counters) beside the socket bytes.
//   - TODO: devices are not restarted mid-run (no reconnect exchanges, no
//     counter blocks across restarts), and no server restart or restore.
//   - TODO: the clock is the real one; the device loop takes no injected
//     clock yet.
package sim
