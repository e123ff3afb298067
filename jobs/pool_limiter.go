package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backfill/backfill/batches"
)

// Bounds of the pool limiter's use of Redis: one call waits at most
// redisTakeTimeout, and after a failure the worker holds its share for
// redisRetryAfter before it asks Redis again.
const (
	redisTakeTimeout = 500 * time.Millisecond
	redisRetryAfter  = 2 * time.Second
)

// poolLimiter is a batches.Limiter for a pool of worker processes. With
// Redis the whole pool reserves from one budget per run (reserveScript).
// Without Redis, or while Redis does not answer, each live worker takes an
// equal share of the rate: the heartbeat counts the live workers running a
// run's jobs.
type poolLimiter struct {
	redis     *redis.Client // nil without Redis
	keyPrefix string
	local     *batches.LocalLimiter
	shares    *runShares
	logger    *slog.Logger

	mu           sync.Mutex
	retryRedisAt time.Time
	// ahead is, for each budget, when the last reservation this worker
	// made in Redis is served: the pool's line there goes on being served
	// after Redis stops answering, so a share taken locally starts then.
	ahead map[batches.Budget]time.Time
	mode  atomic.Pointer[string]
}

// newPoolLimiter holds rates across the pool through rdb (nil: shares).
// Set keyPrefix before the first Reserve: it keeps apart the runs of
// different databases and schemas that use one Redis.
func newPoolLimiter(rdb *redis.Client, shares *runShares, logger *slog.Logger) *poolLimiter {
	l := &poolLimiter{redis: rdb, local: batches.NewLocalLimiter(), shares: shares, logger: logger, ahead: map[batches.Budget]time.Time{}}
	mode := batches.RateLimitShareNoRedis
	if rdb != nil {
		mode = batches.RateLimitRedis
	}
	l.mode.Store(&mode)
	return l
}

// Mode says how the limiter holds rates now (one of the RateLimit consts).
func (l *poolLimiter) Mode() string { return *l.mode.Load() }

// Reserve implements batches.Limiter.
func (l *poolLimiter) Reserve(ctx context.Context, b batches.Budget, perSecond float64, n, burst int) (time.Duration, func(), error) {
	if perSecond <= 0 || n == 0 {
		return 0, func() {}, nil
	}
	if l.useRedis() {
		wait, err := l.reserveRedis(ctx, b, perSecond, n, burst)
		if err == nil {
			l.redisAnswered()
			if n > 0 {
				l.mu.Lock()
				if ready := time.Now().Add(wait); ready.After(l.ahead[b]) {
					l.ahead[b] = ready
				}
				l.mu.Unlock()
			}
			cancel := func() {
				// Best effort, bounded like a reservation: units not given
				// back only slow the run down a little.
				_, _ = l.reserveRedis(context.WithoutCancel(ctx), b, perSecond, -n, burst)
			}
			return wait, cancel, nil
		}
		if ctx.Err() != nil {
			return 0, nil, ctx.Err()
		}
		l.redisFailed(err)
	}
	share := perSecond / float64(l.shares.of(b.RunID))
	if n > 0 {
		l.mu.Lock()
		until, queued := l.ahead[b]
		delete(l.ahead, b)
		l.mu.Unlock()
		if queued {
			// The pool's line in Redis is still being served until then,
			// with its burst: this worker's share starts after it, not on
			// top of it.
			left := max(time.Until(until), 0)
			_, _, _ = l.local.Reserve(ctx, b, share, int(left.Seconds()*share)+burst, burst)
		}
	}
	return l.local.Reserve(ctx, b, share, n, burst)
}

func (l *poolLimiter) useRedis() bool {
	if l.redis == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return !time.Now().Before(l.retryRedisAt)
}

// reserveScript reserves units of a budget in Redis with GCRA: the key
// holds the budget's theoretical arrival time (TAT), in microseconds of
// Redis's clock; a reservation of n units moves it n emission intervals
// (ARGV[1], microseconds) past the later of itself and now, and waits
// until it is at most burst (ARGV[3]) intervals ahead of now. Every
// reservation moves it, so callers are served in the order they asked,
// whatever their sizes, and a change of rate applies to the next
// reservation as it is. A negative n gives units back, never below now
// (an idle budget banks nothing beyond its burst). It returns the wait in
// microseconds. (go-redis/redis_rate only allows or refuses: a refused
// caller asks again later, and larger requests, allowed further ahead,
// starved smaller ones.)
var reserveScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
	tat = now
end
tat = math.max(tat + n * interval, now)
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return math.max(math.ceil(tat - burst * interval - now), 0)
`)

// reserveRedis reserves n units (or gives -n back) of the pool's budget in
// Redis, and returns the wait.
func (l *poolLimiter) reserveRedis(ctx context.Context, b batches.Budget, perSecond float64, n, burst int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, redisTakeTimeout)
	defer cancel()
	key := fmt.Sprintf("%s:%d", l.keyPrefix, b.RunID)
	if b.Kind != batches.BudgetRows {
		key += ":" + b.Kind
	}
	interval := 1e6 / perSecond
	us, err := reserveScript.Run(ctx, l.redis, []string{key + ":tat"}, interval, n, max(burst, 1)).Int64()
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, nil
	}
	return time.Duration(us) * time.Microsecond, nil
}

func (l *poolLimiter) redisAnswered() {
	if l.Mode() != batches.RateLimitRedis {
		mode := batches.RateLimitRedis
		l.mode.Store(&mode)
		l.logger.Info("Redis answers again: rates hold across the pool through Redis")
	}
}

func (l *poolLimiter) redisFailed(err error) {
	l.mu.Lock()
	l.retryRedisAt = time.Now().Add(redisRetryAfter)
	l.mu.Unlock()
	if l.Mode() != batches.RateLimitShareUnreachable {
		mode := batches.RateLimitShareUnreachable
		l.mode.Store(&mode)
		l.logger.Warn("Redis does not answer: each live worker takes its share of the rate until it does", "error", err)
	}
}

// runShares is how many live workers share each active run's rate, as the
// heartbeat last counted them.
type runShares struct {
	mu   sync.Mutex
	live int
	runs map[int64]int
}

// of is the number of workers that share run's rate: those running its
// jobs, counting this one. A run not counted yet is shared by every live
// worker, which errs on the slow side.
func (s *runShares) of(runID int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.runs[runID]; ok {
		return max(n, 1)
	}
	return max(s.live, 1)
}

func (s *runShares) set(c *batches.RunWorkerCounts) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.live = c.Live
	s.runs = make(map[int64]int, len(c.Runs))
	for id, r := range c.Runs {
		n := r.Workers
		if !r.IncludesSelf {
			n++ // this worker is about to run one of its jobs, or will
		}
		s.runs[id] = n
	}
}
