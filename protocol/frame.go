package protocol

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ALPN is the TLS application protocol of the edge frames: an agent offers
// it beside "http/1.1", and a server that knows it answers each edge
// request on that connection with one frame instead of HTTP/1.1. A server
// that does not (before protocol frames) negotiates nothing, and the agent
// speaks HTTP/1.1 as before; the server serves both.
//
// Why: on a connection kept between exchanges, an idle exchange's bodies
// are about 70 bytes, and HTTP/1.1's request line and headers were 200
// more (measured by internal/tools/benchwire). A frame costs 4 bytes for
// both directions of an idle exchange.
const ALPN = "op/1"

// Edge endpoints, as HTTP paths: what a frame's path names.
const (
	SyncPath = "/edge/v1/sync"
	PollPath = "/edge/v1/poll"
)

// Frame is one edge request or answer on an ALPN connection:
//
//	size    uvarint: the bytes after it
//	head    1 byte: bits 0-1 the path (requests: 1 sync, 2 poll; answers 0),
//	        0x04 body is zstd, 0x08 close after this exchange,
//	        0x10 status follows (answers; none means 200),
//	        0x20 body proof follows (requests)
//	status  uvarint, if flagged
//	proof   uvarint length, then BodyProofHeader's value, if flagged
//	body    the rest: the body as it would go over HTTP
//
// Close in a request says the agent sends nothing more on the connection,
// so the server closes it once the answer is out (its FIN leaves with the
// answer); in an answer, that the server closes it.
type Frame struct {
	Path     string // requests: SyncPath or PollPath
	Status   int    // answers: an HTTP status (0 is written as 200); 0 in requests
	Encoding string // "" or EncodingZstd, as Content-Encoding
	Proof    string // requests: the body proof, as the BodyProofHeader value
	Close    bool
	Body     []byte
}

const (
	framePathMask   = 0x03
	frameZstd       = 0x04
	frameClose      = 0x08
	frameStatus     = 0x10
	frameProof      = 0x20
	frameKnownFlags = framePathMask | frameZstd | frameClose | frameStatus | frameProof
	maxProofLen     = 1 << 10
)

// MaxFrame is the most a frame's size field may say: the largest body and
// its fields.
const MaxFrame = MaxCompressedBody + maxProofLen + 16

// ErrFrame is a frame that breaks the format.
var ErrFrame = errors.New("malformed edge frame")

var framePaths = [...]string{1: SyncPath, 2: PollPath}

// AppendFrame appends f's encoding to dst.
func AppendFrame(dst []byte, f *Frame) ([]byte, error) {
	var head byte
	if f.Path != "" {
		i := pathIndex(f.Path)
		if i == 0 {
			return nil, fmt.Errorf("%w: path %q", ErrFrame, f.Path)
		}
		head |= byte(i)
	}
	switch f.Encoding {
	case "":
	case EncodingZstd:
		head |= frameZstd
	default:
		return nil, fmt.Errorf("%w: encoding %q", ErrFrame, f.Encoding)
	}
	if f.Close {
		head |= frameClose
	}
	if (f.Path != "" && f.Status != 0) || (f.Path == "" && f.Proof != "") {
		return nil, fmt.Errorf("%w: a status is for answers, a body proof for requests", ErrFrame)
	}
	var fields []byte
	if f.Status != 0 && f.Status != 200 {
		head |= frameStatus
		fields = binary.AppendUvarint(fields, uint64(f.Status))
	}
	if f.Proof != "" {
		if len(f.Proof) > maxProofLen {
			return nil, fmt.Errorf("%w: body proof of %d bytes", ErrFrame, len(f.Proof))
		}
		head |= frameProof
		fields = binary.AppendUvarint(fields, uint64(len(f.Proof)))
		fields = append(fields, f.Proof...)
	}
	if len(f.Body) > MaxCompressedBody {
		return nil, &LimitError{Limit: "MaxCompressedBody", Max: MaxCompressedBody}
	}
	dst = binary.AppendUvarint(dst, uint64(1+len(fields)+len(f.Body)))
	dst = append(dst, head)
	dst = append(dst, fields...)
	return append(dst, f.Body...), nil
}

func pathIndex(p string) int {
	for i, q := range framePaths {
		if q != "" && q == p {
			return i
		}
	}
	return 0
}

// ReadFrameHead reads a frame up to its body and returns it without Body,
// and the length of the body, which follows on r.
func ReadFrameHead(r *bufio.Reader) (Frame, int, error) {
	size, err := binary.ReadUvarint(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return Frame{}, 0, err // between frames: the peer closed
		}
		return Frame{}, 0, fmt.Errorf("%w: size: %w", ErrFrame, err)
	}
	if size < 1 || size > MaxFrame {
		return Frame{}, 0, fmt.Errorf("%w: size %d", ErrFrame, size)
	}
	cr := &countingReader{r: r}
	head, err := cr.ReadByte()
	if err != nil {
		return Frame{}, 0, fmt.Errorf("%w: %w", ErrFrame, noEOF(err))
	}
	request := head&framePathMask != 0
	if head&^frameKnownFlags != 0 || head&framePathMask == 3 ||
		(request && head&frameStatus != 0) || (!request && head&frameProof != 0) {
		return Frame{}, 0, fmt.Errorf("%w: head %#x", ErrFrame, head)
	}
	f := Frame{Path: framePaths[head&framePathMask], Close: head&frameClose != 0}
	if head&frameZstd != 0 {
		f.Encoding = EncodingZstd
	}
	uvarint := func() (int, error) {
		v, err := binary.ReadUvarint(cr)
		if err != nil {
			return 0, fmt.Errorf("%w: %w", ErrFrame, noEOF(err))
		}
		if v > MaxFrame || uint64(cr.n) > size {
			return 0, fmt.Errorf("%w: field past the frame", ErrFrame)
		}
		return int(v), nil
	}
	if head&frameStatus != 0 {
		if f.Status, err = uvarint(); err != nil {
			return Frame{}, 0, err
		}
		if f.Status < 100 || f.Status > 599 {
			return Frame{}, 0, fmt.Errorf("%w: status %d", ErrFrame, f.Status)
		}
	} else if !request {
		f.Status = 200
	}
	if head&frameProof != 0 {
		n, err := uvarint()
		if err != nil {
			return Frame{}, 0, err
		}
		if n > maxProofLen || uint64(cr.n+n) > size {
			return Frame{}, 0, fmt.Errorf("%w: body proof of %d bytes", ErrFrame, n)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return Frame{}, 0, fmt.Errorf("%w: %w", ErrFrame, noEOF(err))
		}
		f.Proof, cr.n = string(b), cr.n+n
	}
	left := int(size) - cr.n
	if left < 0 || left > MaxCompressedBody {
		return Frame{}, 0, fmt.Errorf("%w: body of %d bytes", ErrFrame, left)
	}
	return f, left, nil
}

// ReadFrame reads a whole frame, body included.
func ReadFrame(r *bufio.Reader) (Frame, error) {
	f, n, err := ReadFrameHead(r)
	if err != nil {
		return f, err
	}
	// Read as it arrives, not allocated from the size field up front.
	if f.Body, err = io.ReadAll(io.LimitReader(r, int64(n))); err != nil {
		return Frame{}, fmt.Errorf("%w: body: %w", ErrFrame, err)
	}
	if len(f.Body) != n {
		return Frame{}, fmt.Errorf("%w: body: %w", ErrFrame, io.ErrUnexpectedEOF)
	}
	return f, nil
}

// countingReader counts the bytes of a frame's head as they are read.
type countingReader struct {
	r *bufio.Reader
	n int
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

// noEOF turns an EOF inside a frame into the unexpected EOF it is.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
