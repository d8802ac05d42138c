package sim

import (
	"context"
	"sync"
	"time"

	"outpost/scheduler"
)

// pace calls next rate times a second until ctx ends, and runs the work it
// returns (nil: none this tick) on one of workers goroutines, so a slow
// answer does not slow the pace; a tick that finds every worker busy and
// the queue full calls behind instead. next and behind run on the calling
// goroutine only. pace returns once the work queued has been done.
func pace(ctx context.Context, rate float64, workers int, next func() func(), behind func()) {
	if rate <= 0 {
		return
	}
	jobs := make(chan func(), 64)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(jobs)
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				j()
			}
		})
	}
	every := time.Duration(float64(time.Second) / rate)
	at := time.Now()
	for {
		at = at.Add(every)
		if !scheduler.Wait(ctx, at) {
			return
		}
		j := next()
		if j == nil {
			continue
		}
		select {
		case jobs <- j:
		default:
			behind()
		}
	}
}
