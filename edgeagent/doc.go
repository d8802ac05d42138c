// Package edgeagent is the agent that runs on an edge device beside its
// Docker engine: it keeps the device's identity, calls the server on the
// schedule the server sets, pushes snapshot deltas of what runs, and runs the
// container, image and volume commands the server queues for it.
//
// # Caveats
//
//   - Everything the agent must remember across restarts (identity key, edge
//     ID, edge key, the snapshot the server acknowledged) lives in the data
//     dir; state is written by rename, so a kill mid-write leaves the old
//     state, never a torn one.
//   - Commands from the server run at most once, ever: the command journal
//     (commands.cbor) records an ID as started before it runs and its result
//     before the ack leaves. A command the agent was killed in is acked
//     Failed, outcome unknown, never run again. Acks stay in the journal's
//     outbox, and go with every request, until a request carrying them is
//     answered.
//   - The loop owns the scheduler.Plan, the state and the command journal;
//     nothing else touches them, so they need no lock. Commands run on the
//     loop, one at a time, between two exchanges.
package edgeagent
