package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
)

// Two processes' limiters on one Redis take from one budget: 2000 rows/s
// with a burst of two 100-row batches lets the pool take two batches at
// once, then the next one 50 ms later, whichever process asks.
func TestPoolLimiter_OneBudgetForThePoolThroughRedis(t *testing.T) {
	ctx := context.Background()
	prefix := fmt.Sprintf("backfill:test:%d", rand.Int64())
	a := newPoolLimiter(newRedis(t), &runShares{}, slog.New(slog.DiscardHandler))
	b := newPoolLimiter(newRedis(t), &runShares{}, slog.New(slog.DiscardHandler))
	a.keyPrefix, b.keyPrefix = prefix, prefix

	for i, l := range []*poolLimiter{a, b} {
		wait, err := l.Take(ctx, batches.Budget{RunID: 1, Kind: batches.BudgetRows}, 2000, 100)
		require.NoError(t, err)
		require.Zero(t, wait, "batch %d is within the burst", i+1)
	}
	for _, l := range []*poolLimiter{a, b} {
		wait, err := l.Take(ctx, batches.Budget{RunID: 1, Kind: batches.BudgetRows}, 2000, 100)
		require.NoError(t, err)
		require.InDelta(t, 50*time.Millisecond, wait, float64(10*time.Millisecond), "the third batch waits for the pool's budget")
	}
	require.Equal(t, batches.RateLimitRedis, a.Mode())

	// Another run has a budget of its own.
	wait, err := b.Take(ctx, batches.Budget{RunID: 2, Kind: batches.BudgetRows}, 2000, 100)
	require.NoError(t, err)
	require.Zero(t, wait)
}

// While Redis does not answer, a worker takes its share of the rate: with 4
// live workers on the run, 2000 rows/s is 500 for this one, so the third
// 100-row batch waits 200 ms. The limiter says so, and retries Redis later.
func TestPoolLimiter_SharesTheRateWhileRedisIsDown(t *testing.T) {
	ctx := context.Background()
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = down.Close() })
	shares := &runShares{}
	shares.set(&batches.RunWorkerCounts{Live: 5, Runs: map[int64]batches.RunWorkers{7: {Workers: 4, IncludesSelf: true}}})
	l := newPoolLimiter(down, shares, slog.New(slog.DiscardHandler))
	l.keyPrefix = "backfill:test:down"

	for range 2 {
		wait, err := l.Take(ctx, batches.Budget{RunID: 7, Kind: batches.BudgetRows}, 2000, 100)
		require.NoError(t, err)
		require.Zero(t, wait)
	}
	wait, err := l.Take(ctx, batches.Budget{RunID: 7, Kind: batches.BudgetRows}, 2000, 100)
	require.NoError(t, err)
	require.InDelta(t, 200*time.Millisecond, wait, float64(20*time.Millisecond))
	require.Equal(t, batches.RateLimitShareUnreachable, l.Mode())
	require.False(t, l.useRedis(), "Redis is asked again only after a pause")

	none := newPoolLimiter(nil, shares, slog.New(slog.DiscardHandler))
	require.Equal(t, batches.RateLimitShareNoRedis, none.Mode())
}

// The share of a run counts this worker once: a run this worker does not
// run yet gets it added; a run not counted at all is shared by every live
// worker.
func TestRunShares_CountThisWorkerOnce(t *testing.T) {
	s := &runShares{}
	require.Equal(t, 1, s.of(1), "before the first count")
	s.set(&batches.RunWorkerCounts{Live: 3, Runs: map[int64]batches.RunWorkers{
		1: {Workers: 2, IncludesSelf: true},
		2: {Workers: 2, IncludesSelf: false},
	}})
	require.Equal(t, 2, s.of(1))
	require.Equal(t, 3, s.of(2))
	require.Equal(t, 3, s.of(9))
}
