package protocol

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Content types and encodings on the wire.
const (
	ContentType  = "application/vnd.outpost.v1+cbor"
	EncodingZstd = "zstd"
)

//go:generate go run ../internal/tools/dictgen -captures ../testdata/docker -out dict/v1.zdict

//go:embed dict
var dictFS embed.FS

var codec struct {
	once   sync.Once
	err    error
	dicts  [][]byte // every embedded dictionary, oldest first
	dict   []byte   // the current dictionary, nil when none is embedded
	dictID uint32
}

// Decoders, each made at its first use (an agent never uses the second):
// both know every embedded dictionary, the second is bounded to
// MaxUnprovedBody. Each holds its own parsed copy of the dictionaries,
// about 0.5 MiB.
var decoders [2]struct {
	once sync.Once
	dec  *zstd.Decoder
	err  error
}

// decoder returns the decoder bounded to bound, MaxDecompressedBody or
// MaxUnprovedBody.
func decoder(bound int) (*zstd.Decoder, error) {
	d := &decoders[0]
	if bound < MaxDecompressedBody {
		d = &decoders[1]
	}
	d.once.Do(func() {
		d.dec, d.err = zstd.NewReader(nil,
			zstd.WithDecoderDicts(codec.dicts...),
			zstd.WithDecoderMaxMemory(uint64(bound)),
			zstd.WithDecoderMaxWindow(MaxDecompressedBody),
			zstd.WithDecoderConcurrency(0),
		)
	})
	return d.dec, d.err
}

// Encoders, in two sizes, because a zstd encoder's memory is set by its
// level, not by what it compresses. SpeedBestCompression held 76 MiB for the
// life of the process (34 MiB of match tables, as much again for the same
// tables primed with the dictionary, 8 MiB of history), which was three
// quarters of an idle agent's memory; it also spent 2.6 ms copying those
// tables for each 80-byte delta.
//
//   - Bodies up to smallBody bytes (deltas, pings with reports, answers,
//     the full snapshot of a small device) use one SpeedFastest encoder,
//     made at the first such body and kept: 0.9 MiB. On a one-container
//     delta it beats the best level (78 B against 80); at 1 to 9 KiB
//     (deltas adding 1 to 20 containers) it is 5-15% larger than
//     SpeedBetterCompression.
//   - Larger bodies (full snapshots of 30 containers and more, job output,
//     answers carrying big stack files) use SpeedBetterCompression encoders
//     of 8.8 MiB each, from a sync.Pool: the garbage collector drops them
//     when they have not been used for two of its cycles, so a device that
//     sent a full snapshot gives the memory back, while a busy server keeps
//     one per body compressed in parallel. A full snapshot is 5-6% larger
//     than at the best level.
//
// The bound between them is high because a body just over it costs 8.8 MiB
// of allocation, and the memory stays until two collections (an idle agent
// collects every two minutes): with a bound of 1 KiB, a delta announcing one
// new container (1,041 B) kept an idle agent 9 MiB bigger for minutes.
// Both windows are small (64 and 256 KiB): the history buffer is sized by
// the window, and a body's matches are close together (the dictionary, 32
// KiB, stays within the small encoder's window).
const smallBody = 16 << 10

var (
	fastEnc struct {
		once sync.Once
		enc  *zstd.Encoder
		err  error
	}
	betterEnc sync.Pool // of *zstd.Encoder
)

// encoderOptions are the options of the encoder for bodies of n bytes, with
// dict (nil for none).
func encoderOptions(n int, dict []byte) []zstd.EOption {
	level, window := zstd.SpeedBetterCompression, 256<<10
	if n <= smallBody {
		level, window = zstd.SpeedFastest, 64<<10
	}
	opts := []zstd.EOption{
		zstd.WithEncoderLevel(level),
		zstd.WithWindowSize(window),
		zstd.WithEncoderCRC(false), // TLS already protects integrity
		zstd.WithEncoderConcurrency(1),
		zstd.WithZeroFrames(true),
		zstd.WithLowerEncoderMem(true),
	}
	if dict != nil {
		opts = append(opts, zstd.WithEncoderDict(dict))
	}
	return opts
}

func initCodec() {
	codec.once.Do(func() {
		dicts, err := loadDicts()
		if err != nil {
			codec.err = err
			return
		}
		codec.dicts = dicts
		if len(dicts) > 0 {
			codec.dict = dicts[len(dicts)-1]
			codec.dictID = dictID(codec.dict)
		}
	})
}

// loadDicts returns the embedded dictionaries ordered by file name.
func loadDicts() ([][]byte, error) {
	names, err := fs.Glob(dictFS, "dict/*.zdict")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out [][]byte
	for _, n := range names {
		b, err := dictFS.ReadFile(n)
		if err != nil {
			return nil, err
		}
		if dictID(b) == 0 {
			return nil, fmt.Errorf("protocol: %s is not a zstd dictionary", n)
		}
		out = append(out, b)
	}
	return out, nil
}

// dictID reads the ID of a zstd dictionary (magic 0xEC30A437, then the ID).
func dictID(d []byte) uint32 {
	if len(d) < 8 || d[0] != 0x37 || d[1] != 0xA4 || d[2] != 0x30 || d[3] != 0xEC {
		return 0
	}
	return uint32(d[4]) | uint32(d[5])<<8 | uint32(d[6])<<16 | uint32(d[7])<<24
}

// DictionaryID is the ID of the dictionary this build compresses with, or 0
// when none is embedded.
func DictionaryID() uint32 {
	initCodec()
	return codec.dictID
}

// Compress returns b as one zstd frame using the current dictionary.
func Compress(b []byte) ([]byte, error) {
	initCodec()
	if codec.err != nil {
		return nil, fmt.Errorf("zstd: %w", codec.err)
	}
	if len(b) <= smallBody {
		fastEnc.once.Do(func() { fastEnc.enc, fastEnc.err = zstd.NewWriter(nil, encoderOptions(smallBody, codec.dict)...) })
		if fastEnc.err != nil {
			return nil, fmt.Errorf("zstd: %w", fastEnc.err)
		}
		return fastEnc.enc.EncodeAll(b, nil), nil
	}
	enc, _ := betterEnc.Get().(*zstd.Encoder)
	if enc == nil {
		var err error
		if enc, err = zstd.NewWriter(nil, encoderOptions(smallBody+1, codec.dict)...); err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
	}
	out := enc.EncodeAll(b, nil)
	betterEnc.Put(enc)
	return out, nil
}

// CompressPlain returns b as one zstd frame without a dictionary, at the
// level Compress uses for its size. It is for measurement and tests: its
// encoder is made for the call and dropped.
func CompressPlain(b []byte) ([]byte, error) {
	enc, err := zstd.NewWriter(nil, encoderOptions(len(b), nil)...)
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	return enc.EncodeAll(b, nil), nil
}

// Decompress inflates one zstd frame, with or without a known dictionary,
// refusing input larger than MaxCompressedBody and output larger than
// MaxDecompressedBody. The output bound is checked while decoding: a frame
// that would inflate further is abandoned, not inflated.
func Decompress(b []byte) ([]byte, error) { return decompress(b, MaxDecompressedBody) }

// decompress is Decompress bounded to limit, MaxDecompressedBody or
// MaxUnprovedBody.
func decompress(b []byte, limit int) ([]byte, error) {
	initCodec()
	if codec.err != nil {
		return nil, fmt.Errorf("zstd: %w", codec.err)
	}
	if len(b) > MaxCompressedBody {
		return nil, &LimitError{Limit: "MaxCompressedBody", Max: MaxCompressedBody}
	}
	name := "MaxDecompressedBody"
	if limit < MaxDecompressedBody {
		name, limit = "MaxUnprovedBody", MaxUnprovedBody
	}
	dec, err := decoder(limit)
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	h, most, err := oneFrame(b)
	if err != nil {
		return nil, fmt.Errorf("%w: zstd: %v", ErrMalformed, err)
	}
	if h.HasFCS && h.FrameContentSize > uint64(limit) {
		return nil, &LimitError{Limit: name, Max: limit}
	}
	var dst []byte
	if !h.HasFCS && most > 1<<20 {
		// Without a declared size DecodeAll grows its output by append,
		// allocating several times the bound on the way to it.
		dst = make([]byte, 0, min(most, uint64(limit)+maxBlockSize))
	}
	out, err := dec.DecodeAll(b, dst)
	switch {
	case err == nil:
		return out, nil
	case errors.Is(err, zstd.ErrDecoderSizeExceeded), errors.Is(err, zstd.ErrWindowSizeExceeded), errors.Is(err, zstd.ErrFrameSizeExceeded):
		return nil, &LimitError{Limit: name, Max: limit}
	case errors.Is(err, zstd.ErrUnknownDictionary):
		return nil, ErrUnknownDictionary
	}
	return nil, fmt.Errorf("%w: zstd: %v", ErrMalformed, err)
}

// WriteBody encodes msg as CBOR and, when that gains, compresses it. It
// returns the body and the Content-Encoding to send ("" for plain CBOR).
func WriteBody(msg any) (body []byte, encoding string, err error) {
	body, encoding, _, err = EncodeBody(msg)
	return body, encoding, err
}

// EncodeBody is WriteBody that also returns the CBOR's length, which says
// whether the body needs a body proof (MaxUnprovedBody).
func EncodeBody(msg any) (body []byte, encoding string, rawLen int, err error) {
	raw, err := Marshal(msg)
	if err != nil {
		return nil, "", 0, err
	}
	rawLen = len(raw)
	if len(raw) < CompressThreshold {
		return raw, "", rawLen, nil
	}
	z, err := Compress(raw)
	if err != nil {
		return nil, "", 0, err
	}
	if len(z) >= len(raw) {
		return raw, "", rawLen, nil
	}
	return z, EncodingZstd, rawLen, nil
}

// ReadBody decodes a body written by WriteBody into msg, given the
// Content-Encoding it came with.
func ReadBody(body []byte, encoding string, msg any) error {
	raw, err := Inflate(body, encoding)
	if err != nil {
		return err
	}
	return Unmarshal(raw, msg)
}

// Inflate returns a body's CBOR, decompressing it if its Content-Encoding
// says zstd.
func Inflate(body []byte, encoding string) ([]byte, error) {
	return InflateLimit(body, encoding, MaxDecompressedBody)
}

// InflateLimit is Inflate bounded to limit: MaxDecompressedBody, or
// MaxUnprovedBody (any smaller limit) for a body whose sender is not known
// yet. A body that would inflate further is refused with a *LimitError
// naming the bound, and is not inflated past it.
func InflateLimit(body []byte, encoding string, limit int) ([]byte, error) {
	if len(body) > MaxCompressedBody {
		return nil, &LimitError{Limit: "MaxCompressedBody", Max: MaxCompressedBody}
	}
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "", "identity":
		if limit < MaxDecompressedBody && len(body) > MaxUnprovedBody {
			return nil, &LimitError{Limit: "MaxUnprovedBody", Max: MaxUnprovedBody}
		}
		return body, nil
	case EncodingZstd:
		return decompress(body, limit)
	}
	return nil, fmt.Errorf("%w: %q", ErrContentEncoding, encoding)
}

// InflatedBound is the most body can inflate to under limit, from its zstd
// frame's block headers (without decoding): what a server reserves before it
// inflates. A body Inflate would refuse gives limit.
func InflatedBound(body []byte, encoding string, limit int) int {
	if limit < MaxDecompressedBody {
		limit = MaxUnprovedBody
	}
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "", "identity":
		return min(len(body), limit)
	case EncodingZstd:
		h, most, err := oneFrame(body)
		if err != nil {
			return limit
		}
		if h.HasFCS {
			most = min(most, h.FrameContentSize)
		}
		return int(min(most, uint64(limit)))
	}
	return limit
}

// maxBlockSize is the most one zstd block decodes to.
const maxBlockSize = 128 << 10

// oneFrame checks that b is exactly one zstd frame, walking its block
// headers. DecodeAll would decode a concatenation of frames, reallocating its
// whole output for each frame that declares its size, which makes a body of
// many tiny frames cost time and memory quadratic in its length. It also
// refuses a frame whose declared content size its blocks cannot produce, as
// DecodeAll allocates the declared size before decoding.
func oneFrame(b []byte) (zstd.Header, uint64, error) {
	var h zstd.Header
	if err := h.Decode(b); err != nil {
		return h, 0, err
	}
	if h.Skippable {
		return h, 0, errors.New("skippable frame")
	}
	n, most := h.HeaderSize, uint64(0)
	for last := false; !last; {
		if len(b)-n < 3 {
			return h, 0, errors.New("truncated block header")
		}
		bh := uint32(b[n]) | uint32(b[n+1])<<8 | uint32(b[n+2])<<16
		n += 3
		last = bh&1 != 0
		size := int(bh >> 3)
		switch bh >> 1 & 3 {
		case 0: // raw
			most += uint64(size)
		case 1: // RLE: one byte, repeated size times
			most += uint64(size)
			size = 1
		case 2: // compressed
			most += maxBlockSize
		default:
			return h, 0, errors.New("reserved block type")
		}
		if len(b)-n < size {
			return h, 0, errors.New("truncated block")
		}
		n += size
	}
	if h.HasCheckSum {
		n += 4
	}
	switch {
	case n > len(b):
		return h, 0, errors.New("truncated checksum")
	case n < len(b):
		return h, 0, fmt.Errorf("%d bytes after the frame; a body is one frame", len(b)-n)
	case h.HasFCS && h.FrameContentSize > most:
		return h, 0, fmt.Errorf("frame declares %d bytes, its blocks hold at most %d", h.FrameContentSize, most)
	}
	return h, most, nil
}
