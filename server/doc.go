// Package server is the Outpost server: the HTTPS API for operators, the edge
// endpoints agents call, and the state behind them.
//
// # Caveats
//
//   - Handlers never hold a lock or a store transaction across network I/O:
//     a request body is read whole (bounded) before any store call.
//   - Last check-in times live in memory (checkins) and are flushed to the
//     store every Config.FlushInterval and at shutdown; a crash loses at most
//     one interval of them and nothing else.
//   - Snapshot pushes of one environment are serialized by a per-environment
//     mutex held while the delta is applied and stored, never across I/O with
//     the agent.
package server
