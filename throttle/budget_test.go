package throttle

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestBudget(t *testing.T) {
	refused := 0
	b := NewBudget(100, func() { refused++ })
	h1, h2 := b.Hold(), b.Hold()
	if err := h1.Take(60); err != nil {
		t.Fatal(err)
	}
	if err := h2.Take(50); !errors.Is(err, ErrBudgetSpent) || refused != 1 {
		t.Fatalf("over the budget: %v, %d refusals", err, refused)
	}
	if err := h2.Take(40); err != nil {
		t.Fatal(err)
	}
	h1.Keep(10)
	if now, peak := b.Used(); now != 50 || peak != 100 {
		t.Fatalf("used %d, peak %d; want 50, 100", now, peak)
	}
	h1.Release()
	h2.Release()
	h2.Release() // twice is harmless
	if now, _ := b.Used(); now != 0 {
		t.Fatalf("used %d after release", now)
	}
}

// A held reader takes what arrives as it arrives, and stops when the budget
// is spent; what it read stays taken until released.
func TestHeldReader(t *testing.T) {
	b := NewBudget(110<<10, nil) // 70 KiB and a chunk of 32 for the read that finds EOF
	h := b.Hold()
	got, err := io.ReadAll(h.Reader(bytes.NewReader(make([]byte, 70<<10))))
	if err != nil || len(got) != 70<<10 {
		t.Fatalf("read %d, %v", len(got), err)
	}
	if now, _ := b.Used(); now != 70<<10 {
		t.Fatalf("holding %d after reading 70 KiB", now)
	}
	other := b.Hold()
	if _, err := io.ReadAll(other.Reader(bytes.NewReader(make([]byte, 70<<10)))); !errors.Is(err, ErrBudgetSpent) {
		t.Fatalf("a second body past the budget: %v", err)
	}
	other.Release()
	h.Release()
	if now, _ := b.Used(); now != 0 {
		t.Fatalf("used %d after release", now)
	}
}
