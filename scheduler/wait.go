package scheduler

import (
	"context"
	"time"
)

// MaxRetryAfter bounds how long a slow_down answer can keep a device quiet,
// so a forged or mistaken one cannot silence it for long.
const MaxRetryAfter = 15 * time.Minute

// Wait waits on a real timer until until, or until ctx ends; it reports
// whether the time came.
func Wait(ctx context.Context, until time.Time) bool {
	t := time.NewTimer(time.Until(until))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
