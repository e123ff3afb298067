package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/cli"
	"github.com/backfill/backfill/internal/testdb"
)

// startWorkers builds cmd/worker and starts n processes on dbURL; they get
// SIGTERM when the test ends.
func startWorkers(t *testing.T, dbURL string, n int) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "worker")
	out, err := exec.Command("go", "build", "-o", bin, "../worker").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	for i := 0; i < n; i++ {
		cmd := exec.Command(bin, "--concurrency", "2")
		cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL)
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("worker output:\n%s", logs.String())
			}
		})
	}
}

func latestStatus(t *testing.T, pool *pgxpool.Pool, version int64) batches.RunStatus {
	t.Helper()
	runs, err := batches.ListStatus(context.Background(), pool, &version)
	require.NoError(t, err)
	require.NotEmpty(t, runs)
	return runs[len(runs)-1]
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A paced counting backfill: 6,000 rows at 1,000 rows/s in 4 partitions,
// paced by its rate alone.
const pacedCounter = `-- table: counters
-- key: id
-- batch: 50
-- partitions: 4
-- rate: 1000
-- duty_cycle: off
UPDATE counters SET n = n + 1 WHERE id BETWEEN @first AND @last;
`

func setupPaced(t *testing.T) (map[string]string, *pgxpool.Pool) {
	t.Helper()
	url, pool := testdb.New(t)
	testdb.Exec(t, pool, `CREATE TABLE counters (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO counters (id) SELECT g FROM generate_series(1, 6000) g;
ANALYZE counters;`)
	dir := t.TempDir()
	writeBackfill(t, dir, "5_paced.sql", pacedCounter)
	env := map[string]string{"DATABASE_URL": url, "BACKFILL_DIR": dir}
	_, _, err := runCLI(t, env, "pending")
	require.NoError(t, err)
	return env, pool
}

func TestPauseResumeCancel_AcrossTwoWorkerProcesses(t *testing.T) {
	t.Parallel()
	env, pool := setupPaced(t)
	startWorkers(t, env["DATABASE_URL"], 2)
	waitFor(t, "the run starts", 30*time.Second, func() bool { return latestStatus(t, pool, 5).RowsDone >= 1000 })

	out, _, err := runCLI(t, env, "pause", "5")
	require.NoError(t, err)
	require.Contains(t, out, "paused 5_paced run 1")
	paused := time.Now()

	// Within 2 seconds no worker works the run any more, and it stays put.
	time.Sleep(2 * time.Second)
	st := latestStatus(t, pool, 5)
	require.Equal(t, batches.StatePaused, st.State)
	require.Zero(t, st.PartitionsRunning, "no job of the run may still be running 2s after pause")
	require.Equal(t, "paused", st.HeldBack)
	require.Zero(t, st.BatchesFailed, "idle partitions of a paused run are not failures")
	_, _, err = runCLI(t, env, "retry", "5")
	require.ErrorIs(t, err, batches.ErrWrongState, "retry does not resume a paused run")
	rowsAtPause := st.RowsDone
	time.Sleep(1500 * time.Millisecond)
	require.Equal(t, rowsAtPause, latestStatus(t, pool, 5).RowsDone, "a paused run does not move")
	require.Less(t, rowsAtPause, int64(6000))
	t.Logf("paused at %d rows, checked %s after pause", rowsAtPause, time.Since(paused).Round(time.Millisecond))

	// Pausing again is refused.
	_, _, err = runCLI(t, env, "pause", "5")
	require.ErrorIs(t, err, batches.ErrWrongState)
	require.Equal(t, 1, cli.ExitCode(err))

	// Resume continues exactly where it stopped: every row once.
	_, _, err = runCLI(t, env, "resume", "5")
	require.NoError(t, err)
	out, _, err = runCLI(t, env, "wait", "5", "--timeout", "60s", "--progress-every", "1s")
	require.NoError(t, err)
	require.Contains(t, out, "completed")
	require.Zero(t, queryCount(t, pool, `SELECT count(*) FROM counters WHERE n <> 1`))

	// A completed run can be neither paused nor cancelled.
	_, _, err = runCLI(t, env, "pause", "5")
	require.ErrorIs(t, err, batches.ErrWrongState)
	_, _, err = runCLI(t, env, "cancel", "5")
	require.ErrorIs(t, err, batches.ErrWrongState)
}

func TestCancel_StopsForGoodUntilRunAgain(t *testing.T) {
	t.Parallel()
	env, pool := setupPaced(t)
	startWorkers(t, env["DATABASE_URL"], 2)
	waitFor(t, "the run starts", 30*time.Second, func() bool { return latestStatus(t, pool, 5).RowsDone >= 500 })

	out, _, err := runCLI(t, env, "cancel", "5")
	require.NoError(t, err)
	require.Contains(t, out, "cancelled 5_paced run 1")
	time.Sleep(2 * time.Second)
	st := latestStatus(t, pool, 5)
	require.Equal(t, batches.StateCancelled, st.State)
	require.NotNil(t, st.FinishedAt)
	require.Zero(t, st.PartitionsRunning)
	rows := st.RowsDone
	time.Sleep(1500 * time.Millisecond)
	require.Equal(t, rows, latestStatus(t, pool, 5).RowsDone, "a cancelled run does not move")

	// wait reports the cancelled run with exit code 1.
	_, _, err = runCLI(t, env, "wait", "5")
	require.Equal(t, 1, cli.ExitCode(err))
	require.Contains(t, err.Error(), "cancelled")

	// Resume and retry refuse; only run --again starts over, as run 2.
	_, _, err = runCLI(t, env, "resume", "5")
	require.ErrorIs(t, err, batches.ErrWrongState)
	_, _, err = runCLI(t, env, "retry", "5")
	require.ErrorIs(t, err, batches.ErrWrongState)
	_, _, err = runCLI(t, env, "run", "5")
	require.Error(t, err)
	out, _, err = runCLI(t, env, "run", "5", "--again")
	require.NoError(t, err)
	require.Contains(t, out, "run 2")
}

func TestWait_ExitCodes(t *testing.T) {
	t.Parallel()
	env, pool := setupPaced(t)

	// No worker: the run cannot finish, and wait times out with exit code 2.
	started := time.Now()
	out, _, err := runCLI(t, env, "wait", "5", "--timeout", "1500ms", "--progress-every", "500ms")
	require.Equal(t, 2, cli.ExitCode(err), "%v", err)
	require.Contains(t, err.Error(), "timed out after 1.5s: 5_paced is pending")
	require.Less(t, time.Since(started), 5*time.Second)
	require.Contains(t, out, "5_paced pending")

	// A failed run: exit code 1 with its error.
	testdb.Exec(t, pool, `UPDATE backfill_runs SET state = 'failed', last_error = 'SQLSTATE 22012: division by zero' WHERE version = 5`)
	_, _, err = runCLI(t, env, "wait", "5")
	require.Equal(t, 1, cli.ExitCode(err))
	require.Contains(t, err.Error(), "division by zero")

	// Bad input: usage errors, not outcomes.
	for _, args := range [][]string{{"wait"}, {"wait", "5", "--timeout", "soon"}, {"wait", "x"}, {"wait", "5", "--timeout", "-1s"}, {"pause"}, {"resume", "abc"}} {
		_, _, err = runCLI(t, env, args...)
		require.Equal(t, cli.ExitUsage, cli.ExitCode(err), "%q: %v", args, err)
	}
	// Unknown versions are errors.
	_, _, err = runCLI(t, env, "wait", "99")
	require.ErrorContains(t, err, "version 99 has not been enqueued")
	_, _, err = runCLI(t, env, "pause", "99")
	require.ErrorIs(t, err, batches.ErrRunNotFound)
}

func queryCount(t *testing.T, pool *pgxpool.Pool, sql string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, pool.QueryRow(context.Background(), sql).Scan(&n))
	return n
}

// "throttle" changes a running run's pace for the worker processes, says
// what it changed, and status shows the pace in force and who set it.
func TestThrottle_FromTheCommandLine(t *testing.T) {
	t.Parallel()
	env, pool := setupPaced(t)
	startWorkers(t, env["DATABASE_URL"], 2)
	waitFor(t, "the run starts", 30*time.Second, func() bool { return latestStatus(t, pool, 5).RowsDone >= 500 })

	for _, args := range [][]string{{"throttle", "5"}, {"throttle", "5", "--rate", "fast"}, {"throttle", "5", "--rate", "-5"},
		{"throttle", "5", "--batch", "0"}, {"throttle", "--rate", "5"}, {"throttle", "x", "--rate", "5"}} {
		_, _, err := runCLI(t, env, args...)
		require.Equal(t, cli.ExitUsage, cli.ExitCode(err), "%q: %v", args, err)
	}
	out, _, err := runCLI(t, env, "throttle", "5", "--rate", "3000", "--batch", "100")
	require.NoError(t, err)
	require.Contains(t, out, "throttled 5_paced run 1: rate 3000 rows/s, batch 100 (was rate 1000 rows/s, batch 50)")

	st := latestStatus(t, pool, 5)
	require.Equal(t, 3000.0, st.Rate)
	require.Equal(t, 100, st.BatchSize)
	require.Equal(t, cli.Actor(), *st.ThrottledBy)
	waitFor(t, "the workers report how they hold the rate", 10*time.Second, func() bool {
		return latestStatus(t, pool, 5).RateLimit == batches.RateLimitShareNoRedis
	})
	out, _, err = runCLI(t, env, "status", "5")
	require.NoError(t, err)
	require.Contains(t, out, "    throttle: rate 3000 rows/s (shared: no Redis configured), duty off, batch 100; set by "+cli.Actor())

	_, _, err = runCLI(t, env, "wait", "5", "--timeout", "60s")
	require.NoError(t, err)
	require.Zero(t, queryCount(t, pool, `SELECT count(*) FROM counters WHERE n <> 1`))
	_, _, err = runCLI(t, env, "throttle", "5", "--rate", "10")
	require.ErrorIs(t, err, batches.ErrWrongState, "a completed run is not throttled")
}
