package waitingroom

import (
	"sync"
	"time"
)

// Limiter is a token bucket per source address: perMinute tokens refill
// evenly over a minute, and a burst of perMinute is allowed.
type Limiter struct {
	now func() time.Time

	mu      sync.Mutex // guards buckets
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

// idle is how long an untouched bucket is kept; a full bucket carries no
// information, so it can go.
const idle = 10 * time.Minute

// NewLimiter returns a limiter reading time from now.
func NewLimiter(now func() time.Time) *Limiter {
	return &Limiter{now: now, buckets: map[string]*bucket{}}
}

// Allow takes one token from source's bucket, reporting whether there was one.
func (l *Limiter) Allow(source string, perMinute int) bool {
	if perMinute <= 0 {
		return false
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > idle {
		for k, b := range l.buckets {
			if now.Sub(b.at) > idle {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b, ok := l.buckets[source]
	if !ok {
		b = &bucket{tokens: float64(perMinute), at: now}
		l.buckets[source] = b
	}
	b.tokens = min(float64(perMinute), b.tokens+now.Sub(b.at).Minutes()*float64(perMinute))
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
