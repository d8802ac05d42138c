package throttle

import (
	"errors"
	"io"
	"sync"
)

// Budget bounds the bytes held by requests in flight across a process: each
// takes what it reads or inflates before it holds it, and gives it back when
// it is done. A taker that finds the budget spent is refused, not queued, so
// a flood cannot hold the memory it would take to serve it.
type Budget struct {
	mu    sync.Mutex // guards used and peak
	max   int64
	used  int64
	peak  int64
	spent func() // called on each refusal, for a counter
}

// NewBudget makes a budget of max bytes. spent, if not nil, is called each
// time a take is refused.
func NewBudget(max int64, spent func()) *Budget {
	return &Budget{max: max, spent: spent}
}

// ErrBudgetSpent is a take refused because the budget is spent.
var ErrBudgetSpent = errors.New("the server holds as many request bytes as it allows; retry shortly")

// Take takes n bytes, or refuses with ErrBudgetSpent and takes nothing.
func (b *Budget) Take(n int64) error {
	b.mu.Lock()
	if b.used+n > b.max {
		b.mu.Unlock()
		if b.spent != nil {
			b.spent()
		}
		return ErrBudgetSpent
	}
	b.used += n
	b.peak = max(b.peak, b.used)
	b.mu.Unlock()
	return nil
}

// Give gives n bytes back.
func (b *Budget) Give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// Used returns the bytes taken now and the most taken at once so far.
func (b *Budget) Used() (now, peak int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.peak
}

// Hold is one request's share of a budget. The zero value holds nothing.
type Hold struct {
	b *Budget
	n int64
}

// Hold starts a request's share.
func (b *Budget) Hold() *Hold { return &Hold{b: b} }

// Take takes n more bytes for the request.
func (h *Hold) Take(n int64) error {
	if err := h.b.Take(n); err != nil {
		return err
	}
	h.n += n
	return nil
}

// Keep gives back all but n of the bytes taken (n no more than taken).
func (h *Hold) Keep(n int64) {
	if n < h.n {
		h.b.Give(h.n - n)
		h.n = n
	}
}

// Release gives back everything the request took.
func (h *Hold) Release() { h.Keep(0) }

// Reader reads from r, taking what each read brought from the hold: a body
// still arriving holds only what arrived (a connection stalled before its
// first byte holds nothing), and a read that finds the budget spent fails
// with ErrBudgetSpent.
func (h *Hold) Reader(r io.Reader) io.Reader { return &heldReader{r: r, h: h} }

type heldReader struct {
	r io.Reader
	h *Hold
}

// readChunk is how much a held read asks for at a time.
const readChunk = 32 << 10

func (hr *heldReader) Read(p []byte) (int, error) {
	if len(p) > readChunk {
		p = p[:readChunk]
	}
	n, err := hr.r.Read(p)
	if n > 0 {
		if terr := hr.h.Take(int64(n)); terr != nil {
			return 0, terr
		}
	}
	return n, err
}
