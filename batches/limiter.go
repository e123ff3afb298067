package batches

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter paces the rows a run processes. Reserve takes n rows from the
// budget of key (a run) whose limit is perSecond rows per second, and says how
// long the caller must wait before it may process them. The rows are taken
// whether or not the caller waits, so a caller that hands the wait to a later
// job must not reserve again for that batch.
type Limiter interface {
	Reserve(ctx context.Context, key string, perSecond float64, n int) (time.Duration, error)
}

// LocalLimiter holds the limits within one process, with golang.org/x/time/rate.
// Several worker processes each allow the full rate.
type LocalLimiter struct {
	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

// NewLocalLimiter returns an empty LocalLimiter.
func NewLocalLimiter() *LocalLimiter {
	return &LocalLimiter{limiters: map[string]*rate.Limiter{}}
}

// Reserve implements Limiter.
func (l *LocalLimiter) Reserve(_ context.Context, key string, perSecond float64, n int) (time.Duration, error) {
	if perSecond <= 0 {
		return 0, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.limiters[key]
	if !ok {
		// A burst of one batch: the run starts at once but never gets ahead
		// of its rate by more than a batch.
		lim = rate.NewLimiter(rate.Limit(perSecond), n)
		l.limiters[key] = lim
	}
	if lim.Limit() != rate.Limit(perSecond) {
		lim.SetLimit(rate.Limit(perSecond))
	}
	if lim.Burst() < n {
		lim.SetBurst(n)
	}
	return lim.ReserveN(time.Now(), n).Delay(), nil
}
