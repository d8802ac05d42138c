// Package store is the server's embedded database: one bbolt file holding
// settings, users, environments, the latest snapshot of each environment and
// a bounded history of how it got there.
//
// Records are JSON, except snapshots, which stay in the wire's CBOR.
//
// # Caveats
//
//   - No method does network I/O, and callers must not call the store while
//     holding a lock that a network operation waits on: bbolt has one writer
//     at a time, and a slow writer stalls every other.
//   - Update callbacks run inside the write transaction: keep them to
//     in-memory work on the record they are given.
package store
