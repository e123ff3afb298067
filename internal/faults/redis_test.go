package faults_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/internal/demo"
	"github.com/backfill/backfill/internal/faults"
	"github.com/backfill/backfill/jobs"
)

// flagsVersion is jobs.FeatureFlagsToRedis: manual, one partition, batches
// of 100 flags, no rate.
const flagsVersion = 20260301120200

// TestRedisKilledMidRun kills the private redis-server while
// FeatureFlagsToRedis writes to it and starts it again once a failed batch
// is recorded: the batch is retried, the run completes, and every flag is in
// the Redis hash with its value.
//
// The server keeps an append-only file synced on every write: a Redis
// without persistence comes back empty after a kill, and the flags written
// before it would be lost through no fault of the backfill.
func TestRedisKilledMidRun(t *testing.T) {
	t.Parallel()
	const flags = 60000
	rds := faults.NewRedis(t, faults.Persistent())
	s := newScenario(t)
	ctx := context.Background()
	// The demo's feature_flags table, alone (no users, no orders).
	require.NoError(t, demo.Setup(ctx, s.pool, "public", demo.Sizes{Flags: flags}))
	res := s.enqueue(30*time.Second, "run", strconv.Itoa(flagsVersion))
	require.Zero(t, res.Code, "enqueue run: %s", res.Output())
	w := s.worker("w1", []string{"REDIS_URL=" + rds.URL()})

	before := s.waitRows(flagsVersion, flags/5)
	killed := time.Now()
	require.NoError(t, rds.Kill())
	// Restart once two failures are recorded: the batch failed, and its
	// first retry (after 1 s) failed too.
	var failed progress
	failedAfter := s.waitFor("two failed tries of a batch recorded", 30*time.Second, func() (bool, error) {
		var err error
		failed, err = s.progressOf(flagsVersion)
		return err == nil && failed.MaxAttempts >= 2, err
	})
	t.Logf("recorded failure (attempt %d): %s", failed.MaxAttempts, failed.PartitionErr)
	require.Contains(t, failed.PartitionErr, "Redis", "the recorded error must say it was Redis")
	require.NoError(t, rds.Start())
	up := time.Now()

	resume := s.resumeAfter(flagsVersion, up)
	s.waitCompleted(flagsVersion)
	done := time.Since(up)
	requireRunning(t, w)

	st, _ := s.status(flagsVersion)
	require.Equal(t, "completed", st.State)
	require.Equal(t, int64(flags), st.RowsDone)
	rdb := rds.Client()
	n, err := rdb.HLen(ctx, jobs.FeatureFlagsKey).Result()
	require.NoError(t, err)
	require.Equal(t, int64(flags), n, "every flag in the hash %q", jobs.FeatureFlagsKey)
	report, err := demo.Verify(ctx, s.pool, demo.VerifyOptions{Schema: "public", Redis: rdb, RedisKey: jobs.FeatureFlagsKey})
	require.NoError(t, err, "every flag in Redis with its value")
	require.True(t, report.FlagsChecked)
	stopWorkers(t, w)
	// go-redis's own messages go through the worker's logger too, in its
	// format (they used to be printed to stderr by the standard log package).
	var foreign []string
	for _, l := range w.Stderr.Between(killed, up) {
		if !strings.HasPrefix(l.Text, "time=") {
			foreign = append(foreign, l.Text)
		}
	}
	require.Empty(t, foreign, "worker log lines during the outage outside the worker's log format")
	figure(t, "redis-kill", "flags_before", before.RowsDone, "second_failure_after", failedAfter,
		"down_for", up.Sub(killed), "resume_after", resume, "completed_after", done,
		"log_lines", len(w.Stderr.Between(killed, up)), "foreign_log_lines", len(foreign))
}
