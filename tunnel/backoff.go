package tunnel

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Backoff spaces redials with full jitter: attempt n waits a uniform random
// time in [0, min(Max, Base·2ⁿ)), so a fleet cut off at once does not come
// back at once.
type Backoff struct {
	Base time.Duration // 0 = 1s
	Max  time.Duration // 0 = 2m

	// Rand is the random source; nil uses math/rand/v2's global one. A
	// *rand.Rand is not safe for concurrent use: give each Backoff its own.
	Rand *rand.Rand

	// Sleep waits d or until ctx ends; nil uses a timer. Tests inject one
	// that returns at once.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Next returns how long to wait before attempt (0 for the first redial).
func (b Backoff) Next(attempt int) time.Duration {
	base := orDefault(b.Base, defaultBackoffMin)
	limit := orDefault(b.Max, defaultBackoffMax)
	ceil := limit
	if attempt < 0 {
		attempt = 0
	}
	if attempt < 62 && base <= limit>>attempt {
		ceil = base << attempt
	}
	if ceil <= 0 {
		return 0
	}
	if b.Rand != nil {
		return time.Duration(b.Rand.Int64N(int64(ceil)))
	}
	return time.Duration(rand.Int64N(int64(ceil)))
}

// Wait sleeps Next(attempt), or until ctx ends.
func (b Backoff) Wait(ctx context.Context, attempt int) error {
	d := b.Next(attempt)
	if b.Sleep != nil {
		return b.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run keeps a tunnel up: it dials, serves until the tunnel ends, and dials
// again after b's wait (the attempt count restarts after each tunnel that
// came up). It returns when ctx ends (ctx.Err()), when the tunnel closed
// for inactivity (ErrInactive: the agent dials again when the server next
// asks), or on an error a redial cannot fix: a bad config, ErrHostKey or
// ErrRefused.
func Run(ctx context.Context, cfg ClientConfig, b Backoff) error {
	if err := cfg.check(); err != nil {
		return err
	}
	log := cfg.withDefaults().Log
	for attempt := 0; ; {
		c, err := Dial(ctx, cfg)
		if err == nil {
			attempt = 0
			stop := context.AfterFunc(ctx, func() { _ = c.Close() })
			err = c.Wait()
			stop()
			if errors.Is(err, ErrInactive) {
				return err
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrHostKey) || errors.Is(err, ErrRefused) {
			return err
		}
		log.Info("tunnel redial", "attempt", attempt, "err", err)
		if err := b.Wait(ctx, attempt); err != nil {
			return err
		}
		attempt++
	}
}
