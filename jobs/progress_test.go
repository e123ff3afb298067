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

// The progress tests measure time, so they do not run in parallel with the
// package's other tests.

// latestStatus reads the status of version's latest run.
func latestStatus(t *testing.T, b *testBundle, version int64) batches.RunStatus {
	t.Helper()
	runs, err := batches.ListStatus(context.Background(), b.pool, &version)
	require.NoError(t, err)
	require.NotEmpty(t, runs, "version %d has no run", version)
	return runs[len(runs)-1]
}

func etaString(eta *float64) string {
	if eta == nil {
		return "null"
	}
	return (time.Duration(*eta * float64(time.Second))).Round(10 * time.Millisecond).String()
}

// A run whose speed the rate limit sets: 12,000 rows at 1,000 rows/s over two
// partitions take about 12 s. While it runs, status must report the speed it
// really goes at, say that the rate limit holds it back, and give an ETA that
// the run then keeps.
// countingRun creates table with rows rows and a backfill of it at version,
// with header lines (batch 100 and 2 partitions, plus extra), and enqueues it.
func countingRun(t *testing.T, table string, version int64, rows int, extra string) (*testBundle, *Enqueuer) {
	t.Helper()
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE `+table+` (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO `+table+` (id) SELECT g FROM generate_series(1, `+itoa(rows)+`) g;
ANALYZE `+table+`;`)
	b.writeFile(t, fmt.Sprintf("%d_%s.sql", version, table), "-- table: "+table+"\n-- key: id\n-- batch: 100\n-- partitions: 2\n"+extra+
		"UPDATE "+table+" SET n = n + 1 WHERE id BETWEEN @first AND @last;\n")
	enq := b.load(t)
	_, err := enq.Pending(context.Background())
	require.NoError(t, err)
	return b, enq
}

func TestProgress_RateAndETAMatchAPacedRun(t *testing.T) {
	const (
		rows    = 12000
		limit   = 1000.0
		version = 5
	)
	b, _ := countingRun(t, "paced", version, rows, "-- rate: 1000\n")
	b.startWorker(t, WorkerConfig{Concurrency: 4})

	// Wait for the run to start, then sample once a second; the sample taken
	// about 4 s after the start is the one checked.
	deadline := time.Now().Add(15 * time.Second)
	var st batches.RunStatus
	for {
		st = latestStatus(t, b, version)
		if st.StartedAt != nil {
			break
		}
		require.True(t, time.Now().Before(deadline), "run did not start (state %s)", st.State)
		time.Sleep(20 * time.Millisecond)
	}
	started := *st.StartedAt
	var (
		checked bool
		sample  batches.RunStatus
		readAt  time.Time
	)
	for i := 1; ; i++ {
		time.Sleep(time.Until(started.Add(time.Duration(i) * time.Second)))
		st = latestStatus(t, b, version)
		at := time.Now()
		t.Logf("t=%5.2fs %s %5d/%d rows, %7.1f rows/s, ETA %s, held back: %q", at.Sub(started).Seconds(), st.State,
			st.RowsDone, st.RowsEstimated, st.RowsPerSecond, etaString(st.ETASeconds), st.HeldBack)
		if !st.State.Active() {
			break
		}
		if i == 4 {
			sample, readAt, checked = st, at, true
		}
		require.Less(t, i, 60, "the run takes far longer than its rate allows")
	}
	require.True(t, checked, "the run ended before the sample at 4 s was taken")
	final := b.waitState(t, version, batches.StateCompleted, 30*time.Second)
	require.Equal(t, int64(rows), final.RowsDone)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM paced WHERE n <> 1`))

	// The measured rate is the real one: within 15% of the limit that paces it.
	require.Equal(t, batches.StateRunning, sample.State)
	require.InEpsilon(t, limit, sample.RowsPerSecond, 0.15, "rows_per_second at 4 s")
	require.Contains(t, sample.HeldBack, "rate limit")
	require.Equal(t, limit, sample.Rate)

	// The ETA is the rows left at the limit's speed, within 25%.
	require.NotNil(t, sample.ETASeconds, "eta_seconds of a running run with a measured rate")
	eta := *sample.ETASeconds
	ideal := float64(sample.RowsEstimated-sample.RowsDone) / limit
	require.InEpsilon(t, ideal, eta, 0.25, "eta_seconds %.2f vs %d rows left at %g rows/s", eta, sample.RowsEstimated-sample.RowsDone, limit)

	// And the run keeps it: it finished within 30% (plus 1.5 s) of the ETA.
	actual := final.FinishedAt.Sub(readAt).Seconds()
	t.Logf("at %.2fs: %.1f rows/s, ETA %.2fs (ideal %.2fs); the run took %.2fs more (total %.2fs, %.0f rows/s overall)",
		readAt.Sub(started).Seconds(), sample.RowsPerSecond, eta, ideal, actual,
		final.FinishedAt.Sub(*final.StartedAt).Seconds(), float64(rows)/final.FinishedAt.Sub(*final.StartedAt).Seconds())
	require.LessOrEqual(t, math.Abs(actual-eta), 0.3*eta+1.5, "ETA %.2fs read at %.2fs, the run took %.2fs more", eta, readAt.Sub(started).Seconds(), actual)

	// Finished: the truth, no ETA, nothing held back.
	require.Equal(t, final.RowsDone, final.RowsEstimated)
	require.Nil(t, final.ETASeconds)
	require.Empty(t, final.HeldBack)
}

// A run nobody works says so, a paused one says it is paused, and a completed
// one reports exact numbers and no ETA.
func TestProgress_HeldBackReasons(t *testing.T) {
	const (
		rows    = 3000
		version = 6
	)
	b, enq := countingRun(t, "idle", version, rows, "")

	// No worker: that is said at once, and after a couple of seconds (status
	// computed 2.5 s later, not waited for) the jobs count as waiting.
	st := latestStatus(t, b, version)
	require.Equal(t, batches.StatePending, st.State)
	require.Equal(t, "no worker is alive", st.HeldBack, "jobs enqueued a moment ago are not waiting yet")
	v := int64(version)
	later, err := batches.ListStatusAt(context.Background(), b.pool, &v, batches.StatusClock{Now: time.Now().Add(2500 * time.Millisecond)})
	require.NoError(t, err)
	st = later[len(later)-1]
	t.Logf("no worker: %s, %.1f rows/s, ETA %s, held back: %q", st.State, st.RowsPerSecond, etaString(st.ETASeconds), st.HeldBack)
	require.Equal(t, batches.StatePending, st.State)
	require.Equal(t, "no worker is alive (2 of 2 partitions waiting)", st.HeldBack)
	require.Equal(t, int64(2), st.PartitionsWaiting)
	require.Zero(t, st.PartitionsRunning)
	require.Zero(t, st.RowsPerSecond)
	require.Nil(t, st.ETASeconds)
	require.Zero(t, st.RowsDone)
	require.Equal(t, int64(rows), st.RowsEstimated)

	// Paused: that is the reason, whatever else holds.
	_, err = enq.Pause(context.Background(), version)
	require.NoError(t, err)
	st = latestStatus(t, b, version)
	t.Logf("paused: %s, %.1f rows/s, ETA %s, held back: %q", st.State, st.RowsPerSecond, etaString(st.ETASeconds), st.HeldBack)
	require.Equal(t, batches.StatePaused, st.State)
	require.Equal(t, "paused", st.HeldBack)
	require.Nil(t, st.ETASeconds)

	// Resumed and worked to the end: exact numbers, no ETA, nothing held back.
	_, err = enq.Resume(context.Background(), version)
	require.NoError(t, err)
	b.startWorker(t, WorkerConfig{Concurrency: 4})
	st = b.waitState(t, version, batches.StateCompleted, 30*time.Second)
	t.Logf("completed: %d/%d rows, %.1f rows/s, ETA %s, held back: %q", st.RowsDone, st.RowsEstimated, st.RowsPerSecond, etaString(st.ETASeconds), st.HeldBack)
	require.Equal(t, int64(rows), st.RowsDone)
	require.Equal(t, st.RowsDone, st.RowsEstimated)
	require.Nil(t, st.ETASeconds)
	require.Empty(t, st.HeldBack)
	require.Zero(t, st.PartitionsWaiting)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM idle WHERE n <> 1`))
}

// A run paused before any worker took it and then resumed is measured like
// any other: while it runs and once it completed.
func TestProgress_ResumedBeforeItStarted(t *testing.T) {
	const (
		rows    = 8000
		limit   = 1000.0
		version = 8
	)
	b, enq := countingRun(t, "resumed", version, rows, "-- rate: 1000\n")
	_, err := enq.Pause(context.Background(), version)
	require.NoError(t, err)
	_, err = enq.Resume(context.Background(), version)
	require.NoError(t, err)
	b.startWorker(t, WorkerConfig{Concurrency: 4})

	deadline := time.Now().Add(15 * time.Second)
	for latestStatus(t, b, version).RowsDone == 0 {
		require.True(t, time.Now().Before(deadline), "no rows done")
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(5 * time.Second)
	st := latestStatus(t, b, version)
	readAt := time.Now()
	t.Logf("running: %d/%d rows, %.1f rows/s, ETA %s, held back: %q", st.RowsDone, st.RowsEstimated, st.RowsPerSecond, etaString(st.ETASeconds), st.HeldBack)
	require.Equal(t, batches.StateRunning, st.State)
	require.InEpsilon(t, limit, st.RowsPerSecond, 0.15, "rows_per_second 5 s into the run")
	require.NotNil(t, st.ETASeconds)
	eta := *st.ETASeconds
	require.InEpsilon(t, float64(st.RowsEstimated-st.RowsDone)/limit, eta, 0.25)

	final := b.waitState(t, version, batches.StateCompleted, 30*time.Second)
	actual := final.FinishedAt.Sub(readAt).Seconds()
	t.Logf("completed: %d rows, %.1f rows/s; ETA %.2fs, took %.2fs more", final.RowsDone, final.RowsPerSecond, eta, actual)
	require.LessOrEqual(t, math.Abs(actual-eta), 0.3*eta+1.5)
	require.Equal(t, int64(rows), final.RowsDone)
	require.InEpsilon(t, limit, final.RowsPerSecond, 0.15, "rows_per_second of the completed run")
}

// A run paused for a while and resumed is measured from the resume on: the
// time it stood still does not drag its speed down, nor stretch its ETA.
func TestProgress_PausedTimeDoesNotCount(t *testing.T) {
	const (
		rows    = 12000
		limit   = 1000.0
		version = 12
	)
	b, enq := countingRun(t, "stood", version, rows, "-- rate: 1000\n")
	b.startWorker(t, WorkerConfig{Concurrency: 4})

	deadline := time.Now().Add(15 * time.Second)
	for latestStatus(t, b, version).RowsDone < 2000 {
		require.True(t, time.Now().Before(deadline), "the run did not start")
		time.Sleep(20 * time.Millisecond)
	}
	_, err := enq.Pause(context.Background(), version)
	require.NoError(t, err)
	time.Sleep(4 * time.Second)
	_, err = enq.Resume(context.Background(), version)
	require.NoError(t, err)
	time.Sleep(3 * time.Second)

	st := latestStatus(t, b, version)
	t.Logf("3 s after a 4 s pause: %d/%d rows, %.1f rows/s, ETA %s", st.RowsDone, st.RowsEstimated, st.RowsPerSecond, etaString(st.ETASeconds))
	require.Equal(t, batches.StateRunning, st.State)
	// Measured across the pause it would read about 5,000 rows / 9 s.
	require.InEpsilon(t, limit, st.RowsPerSecond, 0.25, "rows_per_second after the resume")
	require.NotNil(t, st.ETASeconds)
	require.InEpsilon(t, float64(st.RowsEstimated-st.RowsDone)/limit, *st.ETASeconds, 0.3)
}

// The view's arithmetic on recorded throughput, with time held still (one
// transaction, so now() does not move): a run that did a steady 1,000 rows/s
// is measured at 1,000 rows/s, over the last minute of its work.
func TestProgress_MeasuredOverTheLastMinute(t *testing.T) {
	const version = 7
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE window_rows (id bigint PRIMARY KEY);
INSERT INTO window_rows (id) SELECT g FROM generate_series(1, 1000) g;
ANALYZE window_rows;`)
	b.writeFile(t, "7_window.sql", "-- table: window_rows\n-- key: id\n-- partitions: 1\n"+
		"UPDATE window_rows SET id = id WHERE id BETWEEN @first AND @last;\n")
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)

	for _, tc := range []struct {
		name  string
		state batches.State
		// Seconds before now: the run's recorded start and finish (-1: NULL;
		// started_at = finished_at is what a run gets that was paused before
		// a worker started it and resumed), and the span it worked at 1,000
		// rows/s.
		startedAgo, finishedAgo   float64
		workFromAgo, workUntilAgo float64
		want                      float64
		// eps is the relative error allowed: the start of a run without a
		// usable started_at is known to the second only.
		eps float64
	}{
		{"running for 5 minutes", batches.StateRunning, 300.25, -1, 300.25, 0, 1000, 0.005},
		{"running for 20 s", batches.StateRunning, 20.5, -1, 20.5, 0, 1000, 0.005},
		{"running for 61 s", batches.StateRunning, 61.3, -1, 61.3, 0, 1000, 0.005},
		// The window starts on a whole second, 60 to 61 s before now: 30
		// to 31 s of work in it, 500 to 508 rows/s.
		{"no rows for the last 30 s", batches.StateRunning, 300.25, -1, 300.25, 30, 504, 0.01},
		{"completed 2 minutes ago", batches.StateCompleted, 300.25, 120.4, 300.25, 120.4, 1000, 0.005},
		{"completed after 10 s", batches.StateCompleted, 10.7, 0.2, 10.7, 0.2, 1000, 0.005},
		{"resumed before it started, running", batches.StateRunning, -1, -1, 20.5, 0, 1000, 0.05},
		{"resumed before it started, completed", batches.StateCompleted, 0.5, 0.5, 30.7, 0.5, 1000, 0.05},
		{"pending, nothing done", batches.StatePending, -1, -1, 0, 0, 0, 0.005},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			tx, err := b.pool.Begin(ctx)
			require.NoError(t, err)
			defer tx.Rollback(ctx) //nolint:errcheck
			ago := func(s float64) any {
				if s < 0 {
					return nil
				}
				return s
			}
			_, err = tx.Exec(ctx, `UPDATE backfill_runs SET state = $2,
	started_at = now() - make_interval(secs => $3), finished_at = now() - make_interval(secs => $4)
WHERE version = $1`, version, tc.state, ago(tc.startedAgo), ago(tc.finishedAgo))
			require.NoError(t, err)
			if tc.workFromAgo > tc.workUntilAgo {
				// Buckets of whole seconds, each holding the rows done in its
				// part of the span.
				_, err = tx.Exec(ctx, `
WITH span AS (SELECT now() - make_interval(secs => $2) AS a, now() - make_interval(secs => $3) AS z)
INSERT INTO backfill_throughput (run_id, partition, second, rows)
SELECT r.id, 0, s, round(1000 * extract(epoch FROM least(s + interval '1 second', span.z) - greatest(s, span.a)))::bigint
FROM backfill_runs r, span, generate_series(date_trunc('second', span.a), span.z, interval '1 second') s
WHERE r.version = $1 AND least(s + interval '1 second', span.z) > greatest(s, span.a)`, version, tc.workFromAgo, tc.workUntilAgo)
				require.NoError(t, err)
			}
			v := int64(version)
			runs, err := batches.ListStatus(ctx, tx, &v)
			require.NoError(t, err)
			require.Len(t, runs, 1)
			st := runs[0]
			t.Logf("%s: %.2f rows/s, ETA %s", st.State, st.RowsPerSecond, etaString(st.ETASeconds))
			if tc.want == 0 {
				require.Zero(t, st.RowsPerSecond)
			} else {
				require.InEpsilon(t, tc.want, st.RowsPerSecond, tc.eps)
			}
		})
	}
}
