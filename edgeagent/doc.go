// Package edgeagent is the agent that runs on an edge device beside its
// Docker engine: it keeps the device's identity, calls the server on the
// schedule the server sets, and pushes snapshot deltas of what runs.
//
// # Caveats
//
//   - Everything the agent must remember across restarts (identity key, edge
//     ID, edge key, the snapshot the server acknowledged) lives in the data
//     dir; state is written by rename, so a kill mid-write leaves the old
//     state, never a torn one.
//   - The loop owns the scheduler.Plan and the state; nothing else touches
//     them, so they need no lock.
package edgeagent
