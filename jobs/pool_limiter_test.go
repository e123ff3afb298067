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

// Two processes' limiters on one Redis reserve from one budget: 2000 rows/s
// with a burst of two 100-row batches lets the pool take two batches at
// once, then one every 50 ms, in the order they were asked for, whichever
// process asks.
func TestPoolLimiter_OneBudgetForThePoolThroughRedis(t *testing.T) {
	ctx := context.Background()
	prefix := fmt.Sprintf("backfill:test:%d", rand.Int64())
	a := newPoolLimiter(newRedis(t), &runShares{}, slog.New(slog.DiscardHandler))
	b := newPoolLimiter(newRedis(t), &runShares{}, slog.New(slog.DiscardHandler))
	a.keyPrefix, b.keyPrefix = prefix, prefix
	rows := batches.Budget{RunID: 1, Kind: batches.BudgetRows}

	for i, l := range []*poolLimiter{a, b} {
		wait, _, err := l.Reserve(ctx, rows, 2000, 100, 200)
		require.NoError(t, err)
		require.Zero(t, wait, "batch %d is within the burst", i+1)
	}
	for i, l := range []*poolLimiter{a, b} {
		wait, _, err := l.Reserve(ctx, rows, 2000, 100, 200)
		require.NoError(t, err)
		want := time.Duration(i+1) * 50 * time.Millisecond
		require.InDelta(t, want, wait, float64(10*time.Millisecond), "batch %d waits its turn in the pool's budget", i+3)
	}
	require.Equal(t, batches.RateLimitRedis, a.Mode())

	// Another run has a budget of its own.
	wait, _, err := b.Reserve(ctx, batches.Budget{RunID: 2, Kind: batches.BudgetRows}, 2000, 100, 200)
	require.NoError(t, err)
	require.Zero(t, wait)
}

// A large reservation does not starve a small one asked for after it: the
// small one waits behind it. Given back, it no longer delays anyone.
func TestPoolLimiter_ServesInTheOrderAskedAndGivesBack(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		l    func() batches.Limiter
	}{
		{"redis", func() batches.Limiter {
			l := newPoolLimiter(newRedis(t), &runShares{}, slog.New(slog.DiscardHandler))
			l.keyPrefix = fmt.Sprintf("backfill:test:%d", rand.Int64())
			return l
		}},
		{"local", func() batches.Limiter { return batches.NewLocalLimiter() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := tc.l()
			time := batches.Budget{RunID: 3, Kind: batches.BudgetTime}
			// 1000 units a second, 100 ahead at most: 1000 units wait 0.9 s
			// (more than the burst: the local limiter reserves it in parts).
			big, cancelBig, err := l.Reserve(ctx, time, 1000, 1000, 100)
			require.NoError(t, err)
			require.InDelta(t, 900*1e6, float64(big), 20*1e6)
			small, cancelSmall, err := l.Reserve(ctx, time, 1000, 10, 100)
			require.NoError(t, err)
			require.InDelta(t, 910*1e6, float64(small), 20*1e6, "the small one is served after the large one")
			cancelBig()
			cancelSmall()
			again, _, err := l.Reserve(ctx, time, 1000, 10, 100)
			require.NoError(t, err)
			require.Less(t, float64(again), 20*1e6, "given back, the units no longer delay anyone")
		})
	}
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
	rows := batches.Budget{RunID: 7, Kind: batches.BudgetRows}

	for range 2 {
		wait, _, err := l.Reserve(ctx, rows, 2000, 100, 200)
		require.NoError(t, err)
		require.Zero(t, wait)
	}
	wait, _, err := l.Reserve(ctx, rows, 2000, 100, 200)
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
