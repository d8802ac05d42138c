package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// forEach calls fn for every item from a pool of workers goroutines, and
// progress (if not nil) with the count done after each success. With
// stopOnErr the first error cancels the rest and is returned; otherwise every
// item is tried and all errors are returned.
func forEach[T any](ctx context.Context, workers int, items []T, stopOnErr bool, fn func(context.Context, T) error, progress func(done int)) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ch := make(chan T)
	var (
		wg   sync.WaitGroup
		done atomic.Int64
		mu   sync.Mutex // guards errs
		errs []error
	)
	for range max(1, workers) {
		wg.Go(func() {
			for it := range ch {
				if err := fn(ctx, it); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					if stopOnErr {
						cancel(err)
					}
					continue
				}
				if n := done.Add(1); progress != nil {
					progress(int(n))
				}
			}
		})
	}
feed:
	for _, it := range items {
		select {
		case ch <- it:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if stopOnErr && ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return errors.Join(errs...)
}
