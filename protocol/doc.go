// Package protocol is Outpost's wire format between agents and the server:
// message types for the sync (async agents) and poll (standard agents)
// exchanges, their CBOR codec, the zstd framing with a shared dictionary, the
// bounds every decoder enforces, and the edge key.
//
// A body is deterministic CBOR with integer map keys, optionally inside one zstd
// frame (Content-Encoding: zstd). Durations are whole seconds (JobResult.Duration,
// milliseconds, says so) and times are Unix
// seconds. Decoders ignore map keys they do not know, so a newer peer may add
// fields; a message whose Version is not supported is answered with an Error
// whose Code is CodeUnsupportedVersion.
//
// # Caveats
//
//   - The package does no I/O: callers read bodies (bounded by
//     MaxCompressedBody) and hand bytes to ReadBody, and write what WriteBody
//     returns.
//   - The package imports no other Outpost package. Snapshot payloads travel
//     as raw CBOR (cbor.RawMessage) that package snapshot encodes and decodes.
//   - Every limit is a named constant in limits.go; exceeding one yields a
//     *LimitError, which matches ErrLimit with errors.Is.
package protocol
