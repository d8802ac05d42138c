// Package snapshot is the model of what runs on an edge device, the keyed deltas
// between two snapshots, a canonical hash, and the collectors that read it from
// the local engine.
//
// A Docker snapshot holds engine facts, containers, images, volumes, networks and
// compose projects. Every collection is keyed by a resource ID (short IDs for
// containers, images and networks; names for volumes and projects) and kept
// sorted by that key, so two snapshots of the same engine encode to the same
// bytes and diff record by record, never by array index.
//
// # Caveats
//
//   - Container environment variables are never collected: they hold secrets.
//   - Docker's human status text ("Up 5 minutes") is not part of the model; it
//     changes every minute and would turn every snapshot into a delta. The UI
//     derives it from State, Started and Finished.
//   - Compose's bookkeeping labels (config-hash, image digest, project files
//     and working dir) are dropped by Normalize; the Project record keeps
//     what of them an operator needs.
//   - Call Normalize before Hash or Compute on a snapshot built by hand; the
//     collectors and Apply return normalized snapshots.
package snapshot
