package protocol

// Bounds enforced on every body an agent or the server decodes.
const (
	// MaxCompressedBody is the largest body accepted on the wire.
	MaxCompressedBody = 4 << 20
	// MaxDecompressedBody is the largest body after zstd decompression. A
	// frame that would inflate past it is refused without being inflated.
	MaxDecompressedBody = 32 << 20
	// MaxUnprovedBody is the most an edge request's body may inflate to
	// before the server knows who sent it: a request whose CBOR is larger
	// carries a body proof (BodyProofHeader) over its body as sent, which
	// the server checks before it inflates the body past this.
	MaxUnprovedBody = 64 << 10
	// MaxNestingDepth bounds how deeply CBOR arrays and maps may nest.
	MaxNestingDepth = 16
	// MaxArrayElements bounds the length of any CBOR array.
	MaxArrayElements = 65536
	// MaxMapPairs bounds the number of pairs of any CBOR map.
	MaxMapPairs = 65536
)

// CompressThreshold is the body size below which zstd rarely gains: smaller
// bodies go as plain CBOR.
const CompressThreshold = 48
