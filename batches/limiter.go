package batches

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter paces a run. Reserve takes n units from budget b, which refills
// at perSecond units per second and holds at most burst units, and says how
// long the caller must wait before it uses them (0: at once). Reservations
// are served in the order they are made, whatever their sizes, so that no
// caller starves behind larger ones; over any window the budget gives at
// most perSecond times the window plus burst. cancel gives the units back
// when the caller does not use them after all (the run's throttle changed
// while it waited). A negative n gives back -n units a caller reserved but
// did not use, never more than the budget holds when it is full: unused
// time is not banked for later.
type Limiter interface {
	Reserve(ctx context.Context, b Budget, perSecond float64, n, burst int) (wait time.Duration, cancel func(), err error)
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

// RateBurstBatches is how many of a run's batches its rows budget holds:
// a late caller does not lose its turn.
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

// Reserve implements Limiter.
func (l *LocalLimiter) Reserve(_ context.Context, b Budget, perSecond float64, n, burst int) (time.Duration, func(), error) {
	if perSecond <= 0 || n == 0 {
		return 0, func() {}, nil
	}
	burst = max(burst, 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	lim, ok := l.limiters[b]
	if !ok {
		lim = rate.NewLimiter(rate.Limit(perSecond), burst)
		l.limiters[b] = lim
	}
	if lim.Limit() != rate.Limit(perSecond) {
		lim.SetLimitAt(now, rate.Limit(perSecond))
	}
	if lim.Burst() != burst {
		lim.SetBurstAt(now, burst)
	}
	// x/time/rate reserves at most burst units at once: the burst is raised
	// for a larger reservation alone, which then waits for all its units. A
	// negative one adds tokens, which the limiter caps at burst the next
	// time it counts them.
	if n > burst {
		lim.SetBurstAt(now, n)
	}
	r := lim.ReserveN(now, n)
	if n > burst {
		lim.SetBurstAt(now, burst)
	}
	// Cancelled, the units are given back like unused ones (rather than
	// with Reservation.CancelAt, which gives back little of a reservation
	// others reserved after).
	return r.DelayFrom(now), func() { lim.ReserveN(time.Now(), -n) }, nil
}
