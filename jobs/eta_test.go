package jobs

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// The ETA tests measure time, so they do not run in parallel with the
// package's other tests.

// etaSample is a run's status read at a moment of its life.
type etaSample struct {
	label string
	at    time.Time
	st    batches.RunStatus
}

// pacedRun runs a backfill of rows rows (statement as given, with header
// lines) on a real worker and reads its status once the run has worked
// about each of the given times, and returns the samples and the finished
// run. The samples are read when the condition holds, polling, not after
// fixed sleeps.
func pacedRun(t *testing.T, table string, version int64, rows int, header, statement string, cfg WorkerConfig, at ...time.Duration) ([]etaSample, batches.RunStatus) {
	t.Helper()
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE `+table+` (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO `+table+` (id) SELECT g FROM generate_series(1, `+itoa(rows)+`) g;
ANALYZE `+table+`;`)
	b.writeFile(t, fmt.Sprintf("%d_%s.sql", version, table), "-- table: "+table+"\n-- key: id\n"+header+statement)
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)
	b.startWorker(t, cfg)

	var st batches.RunStatus
	require.Eventually(t, func() bool {
		st = latestStatus(t, b, version)
		return st.StartedAt != nil
	}, 15*time.Second, 10*time.Millisecond, "the run did not start")
	started := *st.StartedAt
	var samples []etaSample
	for _, d := range at {
		require.Eventually(t, func() bool { return time.Since(started) >= d }, d+time.Second, 10*time.Millisecond)
		st = latestStatus(t, b, version)
		require.Equal(t, batches.StateRunning, st.State, "the run ended before %s", d)
		samples = append(samples, etaSample{label: "t=" + d.String(), at: time.Now(), st: st})
	}
	final := b.waitState(t, version, batches.StateCompleted, 60*time.Second)
	require.Equal(t, int64(rows), final.RowsDone)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM `+table+` WHERE n <> 1`))
	return samples, final
}

// checkHonestETA checks that each sample's ETA was kept: the time the run
// really took from then on lies within the sample's ETA range, and its point
// estimate is within 30% of it.
func checkHonestETA(t *testing.T, samples []etaSample, final batches.RunStatus) {
	t.Helper()
	took := final.FinishedAt.Sub(*final.StartedAt).Seconds()
	for _, s := range samples {
		left := final.FinishedAt.Sub(s.at).Seconds()
		t.Logf("%-6s %5d/%d rows, %7.1f rows/s, ETA %s (range %s to %s); the run took %.2fs more (%.2fs in all)",
			s.label, s.st.RowsDone, s.st.RowsEstimated, s.st.RowsPerSecond, etaString(s.st.ETASeconds),
			etaString(s.st.ETALowSeconds), etaString(s.st.ETAHighSeconds), left, took)
	}
	for _, s := range samples {
		left := final.FinishedAt.Sub(s.at).Seconds()
		require.NotNil(t, s.st.ETASeconds, "%s: an ETA", s.label)
		eta := *s.st.ETASeconds
		require.LessOrEqual(t, math.Abs(eta-left), 0.3*left, "%s: ETA %.2fs, the run took %.2fs more", s.label, eta, left)
		require.NotNil(t, s.st.ETALowSeconds, "%s: a range", s.label)
		require.NotNil(t, s.st.ETAHighSeconds, "%s: a range", s.label)
		low, high := *s.st.ETALowSeconds, *s.st.ETAHighSeconds
		require.LessOrEqual(t, low, eta, s.label)
		require.GreaterOrEqual(t, high, eta, s.label)
		require.True(t, low <= left && left <= high, "%s: the run took %.2fs more, outside the ETA's range %.2fs to %.2fs", s.label, left, low, high)
	}
}

// A run the rate limit paces: 20,000 rows at 2,000 rows/s over 8 partitions,
// about 10 s. Its ETA is honest from the first second: the run's remaining
// time lies within the range status gives, at 1 s, 3 s and halfway.
func TestETA_HonestFromTheFirstSecondUnderARateLimit(t *testing.T) {
	samples, final := pacedRun(t, "rated", 31, 20000, "-- batch: 100\n-- partitions: 8\n-- rate: 2000\n-- duty_cycle: off\n",
		"UPDATE rated SET n = n + 1 WHERE id BETWEEN @first AND @last;\n", WorkerConfig{Concurrency: 8},
		time.Second, 3*time.Second, 5*time.Second)
	checkHonestETA(t, samples, final)
	// The rate is known from the start: the range is narrow.
	for _, s := range samples {
		require.LessOrEqual(t, *s.st.ETAHighSeconds, 1.5**s.st.ETASeconds+1, "%s: a rate-limited run's range stays narrow", s.label)
	}
}

// A run its duty cycle paces: each batch keeps the database busy about 25
// ms (a pg_sleep stands for rows that are costly to change), and a duty
// cycle of 30% allows about 12 batches, 1,200 rows, a second: 12,000 rows
// take about 10 s. Every partition's first batch runs before it pays the
// duty cycle, so the first second does far more than the pace; an ETA from
// the speed so far was about 40% short at 1 s.
func TestETA_HonestFromTheFirstSecondUnderADutyCycle(t *testing.T) {
	samples, final := pacedRun(t, "dutied", 32, 12000, "-- batch: 100\n-- partitions: 8\n-- duty_cycle: 30%\n",
		"UPDATE dutied SET n = n + 1 FROM (SELECT pg_sleep(0.02)) s WHERE id BETWEEN @first AND @last;\n", WorkerConfig{Concurrency: 8},
		time.Second, 3*time.Second, 5*time.Second)
	checkHonestETA(t, samples, final)
}
