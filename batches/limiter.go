package batches

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter paces a run. Take takes n units from budget b of perSecond units
// per second and returns 0 when they are there now; otherwise it takes
// nothing and says how long until they may be, and the caller asks again
// then (the rate may have changed meanwhile).
//
// A budget may run ahead of its rate by RateBurstBatches times n, so that a
// late caller does not lose its turn; over any longer window the rate
// holds.
type Limiter interface {
	Take(ctx context.Context, b Budget, perSecond float64, n int) (time.Duration, error)
}

// Budget names what a Limiter counts for a run.
type Budget struct {
	RunID int64
	// Kind is BudgetRows (the rate) or BudgetTime (the duty cycle, in
	// milliseconds of batches).
	Kind string
}

// Kinds of Budget.
const (
	BudgetRows = "rows"
	BudgetTime = "time"
)

// How a worker holds runs' rates, as its heartbeat reports it and status
// shows it: one budget for the whole pool in Redis, or an equal share of the
// rate for each live worker, with the reason.
const (
	RateLimitRedis            = "redis"
	RateLimitShareNoRedis     = "share: no Redis configured"
	RateLimitShareUnreachable = "share: Redis unreachable"
)

// RateBurstBatches is how many batches a run's budget may be ahead of its
// rate.
const RateBurstBatches = 2

// LocalLimiter holds the limits within one process, with golang.org/x/time/rate.
type LocalLimiter struct {
	mu       sync.Mutex
	limiters map[Budget]*rate.Limiter
}

// NewLocalLimiter returns an empty LocalLimiter.
func NewLocalLimiter() *LocalLimiter {
	return &LocalLimiter{limiters: map[Budget]*rate.Limiter{}}
}

// Take implements Limiter.
func (l *LocalLimiter) Take(_ context.Context, b Budget, perSecond float64, n int) (time.Duration, error) {
	if perSecond <= 0 || n <= 0 {
		return 0, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	burst := RateBurstBatches * n
	lim, ok := l.limiters[b]
	if !ok {
		lim = rate.NewLimiter(rate.Limit(perSecond), burst)
		l.limiters[b] = lim
	}
	now := time.Now()
	if lim.Limit() != rate.Limit(perSecond) {
		lim.SetLimitAt(now, rate.Limit(perSecond))
	}
	if lim.Burst() < burst {
		lim.SetBurstAt(now, burst)
	}
	r := lim.ReserveN(now, n)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, nil
	}
	return 0, nil
}
