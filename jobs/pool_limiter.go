package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
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
// Redis the whole pool takes rows from one budget per run (GCRA, through
// github.com/go-redis/redis_rate). Without Redis, or while Redis does not
// answer, each live worker takes an equal share of the rate: the heartbeat
// counts the live workers running a run's jobs.
type poolLimiter struct {
	redis     *redis_rate.Limiter // nil without Redis
	keyPrefix string
	local     *batches.LocalLimiter
	shares    *runShares
	logger    *slog.Logger

	mu           sync.Mutex
	retryRedisAt time.Time
	mode         atomic.Pointer[string]
}

// newPoolLimiter holds rates across the pool through rdb (nil: shares).
// Set keyPrefix before the first Take: it keeps apart the runs of different
// databases and schemas that use one Redis.
func newPoolLimiter(rdb *redis.Client, shares *runShares, logger *slog.Logger) *poolLimiter {
	l := &poolLimiter{local: batches.NewLocalLimiter(), shares: shares, logger: logger}
	mode := batches.RateLimitShareNoRedis
	if rdb != nil {
		l.redis = redis_rate.NewLimiter(rdb)
		mode = batches.RateLimitRedis
	}
	l.mode.Store(&mode)
	return l
}

// Mode says how the limiter holds rates now (one of the RateLimit consts).
func (l *poolLimiter) Mode() string { return *l.mode.Load() }

// Take implements batches.Limiter.
func (l *poolLimiter) Take(ctx context.Context, b batches.Budget, perSecond float64, n int) (time.Duration, error) {
	if perSecond <= 0 || n <= 0 {
		return 0, nil
	}
	if l.useRedis() {
		d, err := l.takeRedis(ctx, b, perSecond, n)
		if err == nil {
			l.redisAnswered()
			return d, nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		l.redisFailed(err)
	}
	return l.local.Take(ctx, b, perSecond/float64(l.shares.of(b.RunID)), n)
}

func (l *poolLimiter) useRedis() bool {
	if l.redis == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return !time.Now().Before(l.retryRedisAt)
}

// takeRedis asks the pool's budget in Redis. GCRA keeps one timestamp per
// run, so a change of rate applies to the next call as it is.
func (l *poolLimiter) takeRedis(ctx context.Context, b batches.Budget, perSecond float64, n int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, redisTakeTimeout)
	defer cancel()
	// redis_rate counts whole events per period: a period of 1000 s keeps
	// three decimals of a fractional rate.
	limit := redis_rate.Limit{
		Rate:   int(math.Max(1, math.Round(perSecond*1000))),
		Period: 1000 * time.Second,
		Burst:  batches.RateBurstBatches * n,
	}
	key := fmt.Sprintf("%s:%d", l.keyPrefix, b.RunID)
	if b.Kind != batches.BudgetRows {
		key += ":" + b.Kind
	}
	res, err := l.redis.AllowN(ctx, key, limit, n)
	if err != nil {
		return 0, err
	}
	if res.Allowed > 0 {
		return 0, nil
	}
	return max(res.RetryAfter, time.Millisecond), nil
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
