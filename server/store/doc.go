// Package store is the server's embedded database: one bbolt file holding
// settings, users, environments, the latest snapshot of each environment and
// a bounded history of how it got there.
//
// Records are JSON, except snapshots and their history, which are CBOR like
// the wire (schema 2).
//
// The file carries a schema version. Open runs the migrations the file has
// not had, in order, one write transaction each (migrations.go), and refuses
// a file a newer server wrote. Backup copies a consistent snapshot of the
// file while the server runs; a copy is restored by putting it in place of
// outpost.db while the server is stopped.
//
// # Caveats
//
//   - No method does network I/O, and callers must not call the store while
//     holding a lock that a network operation waits on: bbolt has one writer
//     at a time, and a slow writer stalls every other.
//   - Update callbacks run inside the write transaction: keep them to
//     in-memory work on the record they are given.
//   - One process at a time: bbolt locks the file, and a second Open (a
//     second server, or a backup of a running one) fails with ErrLocked.
//   - Backup, like any read, holds a read transaction while it runs. Open
//     maps the file 1 GiB ahead (initialMmapSize) so that writes go on
//     meanwhile; past that, a write that grows the file waits for every
//     open reader. Give Backup a local file, never the network.
package store
