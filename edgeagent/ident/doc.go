// Package ident is a device's proof of who it is to the server: its Ed25519
// identity key, its X25519 key agreement key, its edge ID and proof counter,
// and the MAC key it shares with the server once bound (docs/architecture.md,
// "Device identity"). It seals requests, makes body proofs, checks the
// server's key against the edge key's pinned tunnel host key and verifies
// answers' tags.
//
// The agent (edgeagent) and the fleet simulator (sim) both prove themselves
// with it, so a simulated device proves exactly what a real one does.
//
// # Caveats
//
//   - An Identity is not safe for concurrent use: one exchange at a time.
//   - Counters must rise across restarts. Identity keeps none on disk: the
//     caller's reserve callback (Seal) persists what it must before a counter
//     is used.
//   - VerifyAnswer changes nothing: the caller adopts the key and environment
//     it returns (MAC, Env) only once the answer verified.
package ident
