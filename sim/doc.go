// Package sim is the fleet simulator behind outpost-sim (issue 13): a fleet
// of simulated async and standard devices, each speaking the real protocol
// to a running server, their tunnels, an edge stack over a group of them,
// and the measurements of what the fleet cost the server.
//
// Each device has its own Ed25519 identity key, X25519 key, edge ID, proof
// counter, MAC key after its first contact, snapshot sequence and engine,
// and proves itself with the agent's own edgeagent/ident; its schedule is
// the agent's scheduler.Plan (merged kinds, ±10% jitter, backoff), its
// snapshots the agent's (a full snapshot, then keyed deltas from the acked
// base with snapshot.Compute). Its engine is a real capture of testdata/docker
// with names and IDs made its own; a configurable fraction of its
// containers stop or start each hour. Its link to the server is the
// agent's own client (edgeagent/link: edge frames on one TLS connection,
// kept while the next exchange is near), from its own 127.0.0.x source
// address (PerAddress devices per address).
// One exchange serves both modes, as in the agent: an async device posts
// it to /edge/v1/sync at its frequencies, a standard device to
// /edge/v1/poll every PollFreq seconds (its snapshots every Freq).
//
// Onboarding is through the REST API: environments are pre-staged in bulk
// (POST /api/environments/bulk, mode async or standard) and each device
// binds with its edge key's enrollment secret. Commands (container.restart
// of one of the device's containers) are queued through the API at a
// configurable rate on devices of both modes; devices ack them ok at their
// next exchange and run nothing.
//
// Tunnels: the simulator asks the server for the tunnels of the first
// Tunnels standard devices (POST /api/environments/{id}/tunnel, once each
// has checked in); the server answers their next poll with tunnel
// required, and the device opens it with the project's tunnel client
// (tunnel.Dial, its identity key, the host key its edge key pins) and holds
// it for the run. Through the first BusyTunnels of them the simulator sends
// TunnelRequestsPerSec requests to the server's API (the Docker API's
// /_ping and /containers/json, the agent API's ping and host info), which
// the server proxies through the tunnel to a small handler of the device
// serving them from its engine; their latency is the kind "tunnel".
//
// Edge stacks: once the first StackGroup devices (async first) have all
// checked in, the simulator puts them in a static edge group and creates a
// compose edge stack targeting it (POST /api/edge-groups, /api/edge-stacks).
// A device given the stack.deploy keeps its content (checked against its
// hash), acks the command and reports the stack running at its next
// exchange without running Compose. The report has the delivery: from the
// creating call to each device's answer bringing the deploy, and to the
// answer to its running report, and to the last device's.
//
// The report (Report) has exchanges per second, latency per exchange kind
// (first, snapshot, commands, ping, poll, stack, tunnel), errors by kind,
// the server's CPU, RSS and goroutines (/proc and its /metrics), bytes per
// exchange and per device and day of each mode, command delivery, the
// tunnels and the stack; as JSON, and as an HTML page with SVG charts over
// time.
//
// # Caveats
//
//   - sim reaches the server over HTTP only: it imports none of server,
//     server/store, web or edgeagent (internal/deps checks it); it shares
//     the agent's edgeagent/ident, edgeagent/link, scheduler and the
//     tunnel package.
//   - Latencies are measured by the simulator, on the same machine as the
//     server: the simulator's own CPU use is in them.
//   - Socket bytes are TLS records (frames, TLS framing, handshakes);
//     TCP/IP headers, ACKs and keepalives are not counted. A tunnel's
//     socket bytes are not counted at all (tunnel.Dial makes its own
//     connection): a tunnel request's bytes are its answer's body.
//   - Per-day bytes scale the run's mean exchange after first contact to
//     one exchange per frequency: a short run has fewer deltas per exchange
//     than a day would. Stack deliveries are left out of them.
//   - CPU times are read in USER_HZ of 100.
//   - A device starts on its environment's frequencies (the agent starts on
//     scheduler.Defaults until its first answer), after a random delay
//     within Config.Ramp.
//   - A tunnel never closes for inactivity (the agent closes one after
//     EDGE_INACTIVITY_TIMEOUT, and the server then reads a last snapshot
//     through it, which the simulated device could not serve). Its tunnel
//     connection is dialed from the default source address, not the
//     device's 127.0.0.x.
//   - A device answers what its engine was when its tunnel opened: its
//     later container changes are not in /containers/json.
//   - A stack is reported running at once, with the command's ack: no
//     acknowledged or deploying report precedes it, and its content is
//     never deleted.
//   - Each connection is a file in the server and in the simulator: at
//     most about 20,000 of each here (the open-file hard limit).
//
// # Not done yet
//
//   - TODO: edge jobs; stack updates and removals driven by the simulator
//     (devices take stack.remove, but nothing asks for one); dynamic (tag)
//     groups.
//   - TODO: onboarding through the waiting room with trust by rule.
//   - TODO: the 100,000 async and 10,000 standard devices of issue 13's
//     standard scenario do not fit this machine's 20,000 files per
//     process; nor its targets (p99 ≤ 100 ms, RSS ≤ 2 GiB, delivery
//     within one interval + 5 s) and raising N until the server breaks.
//   - TODO: IP-layer bytes (kernel counters) beside the socket bytes, and
//     a tunnel's socket bytes. make bench-wire (internal/tools/benchwire)
//     measures both layers for one device with the same client.
//   - TODO: devices are not restarted mid-run (no reconnect exchanges, no
//     counter blocks across restarts), tunnels are not closed for
//     inactivity and reopened, and no server restart or restore.
//   - TODO: the clock is the real one; the device loop takes no injected
//     clock yet.
package sim
