package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/faults"
)

// The pool-rate backfill: 400,000 rows in batches of 1,000 over 16
// partitions at 8,000 rows/s for the whole pool. Four workers of
// concurrency 4 each run four of the partitions' jobs; at the rate the run
// takes 50 s, so it is still going at the end of the measured window
// (warm-up + 30 s).
const (
	rateVersion    = 20260501000000
	rateRows       = 400000
	rateBatch      = 1000
	ratePartitions = 16
	poolRate       = 8000
	rateWorkers    = 4
	// rateWindow is the measured window; the pool must hold poolRate within
	// rateTolerance over it.
	rateWindow    = 30 * time.Second
	rateTolerance = 0.05
	// rateWarmUp is the least time all the workers run the run's jobs
	// before the window opens: each has counted the others by then (the
	// heartbeat counts every 2 s), and the budgets' initial bursts are spent.
	rateWarmUp = 4 * time.Second
	// rateKillAt is when, into the window, the Redis scenario kills Redis.
	rateKillAt = 10 * time.Second
)

const poolRateFile = `-- Counts how often each row was processed, at a rate for the whole pool.
-- table: counters
-- key: id
-- batch: %d
-- partitions: %d
-- rate: %d
-- duty_cycle: off
-- attempts: 5
UPDATE counters SET n = n + 1 WHERE id BETWEEN @first AND @last;
`

// TestPoolRate runs 4 worker processes on one run at rate 8000 rows/s and
// measures, from the database, the rows the pool processes over 30 s: they
// must hold 8000 rows/s within 5%
//
//   - with Redis: one budget for the whole pool; every worker reports
//     "redis";
//   - without Redis: each worker takes a quarter; they report "share: no
//     Redis configured";
//   - with Redis killed 10 s into the window: the workers fall back to
//     their shares within a few seconds and report "share: Redis
//     unreachable", and the window, kill and fallback included, holds the
//     rate.
//
// In each no row is processed twice, and every row processed is in the
// run's rows_done.
//
// The scenarios run in parallel, each on its own private cluster (and
// Redis); each takes about 40 s, mostly the window. The test itself is not
// parallel, so that it does not share the machine with the other fault
// tests: what it measures is a rate. go test runs GOMAXPROCS parallel tests
// at a time: on 2 cores, give -parallel 3 to run the three at once.
//
//	go test -count=1 -run TestPoolRate -parallel 3 -v ./internal/faults/
func TestPoolRate(t *testing.T) {
	for _, sc := range []poolRateScenario{
		{name: "redis", redis: true, mode: batches.RateLimitRedis},
		{name: "no-redis", mode: batches.RateLimitShareNoRedis},
		{name: "redis-killed", redis: true, kill: true, mode: batches.RateLimitRedis},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			testPoolRate(t, sc)
		})
	}
}

type poolRateScenario struct {
	name  string
	redis bool // REDIS_URL points at a private redis-server
	kill  bool // Redis is killed rateKillAt into the window
	mode  string
}

// poolRateStatus is what the test reads of "enqueue status --json".
type poolRateStatus struct {
	State         string  `json:"state"`
	Rate          float64 `json:"rate"`
	BatchSize     int     `json:"batch_size"`
	RateLimit     string  `json:"rate_limit"`
	RowsDone      int64   `json:"rows_done"`
	RowsPerSecond float64 `json:"rows_per_second"`
}

func testPoolRate(t *testing.T, sc poolRateScenario) {
	began := time.Now()
	var env []string
	var rds *faults.Redis
	if sc.redis {
		rds = faults.NewRedis(t)
		env = []string{"REDIS_URL=" + rds.URL()}
	}
	s := newScenario(t)
	s.setupPoolRate()
	setUp := time.Since(began)
	workers := make([]*faults.Process, rateWorkers)
	for i := range workers {
		// The default job timeout (1 m: slices of 15 s) and heartbeat (2 s).
		workers[i] = faults.StartWorker(t, s.bins, fmt.Sprintf("w%d", i+1), append(s.env(), env...),
			"--concurrency", "4")
	}

	// Warm-up: every worker runs jobs of the run and reports the mode, and
	// each has beaten (and so counted the others) since.
	s.waitFor("all workers running the run's jobs", 60*time.Second, func() (bool, error) {
		n, err := s.rateWorkersRunning(rateVersion)
		return n == rateWorkers, err
	})
	allRunning := time.Now()
	var dbAllRunning time.Time
	require.NoError(t, s.pool.QueryRow(context.Background(), `SELECT now()`).Scan(&dbAllRunning))
	s.waitFor("every worker's heartbeat after all ran jobs, with mode "+sc.mode, 30*time.Second, func() (bool, error) {
		n, err := s.rateWorkersReporting(sc.mode, dbAllRunning)
		return n == rateWorkers, err
	})
	if d := rateWarmUp - time.Since(allRunning); d > 0 {
		time.Sleep(d)
	}
	requireRunning(t, workers...)
	st := s.rateStatus()
	require.Equal(t, float64(poolRate), st.Rate, "status rate")
	require.Equal(t, rateBatch, st.BatchSize, "status batch_size")
	require.Equal(t, sc.mode, st.RateLimit, "status rate_limit before the window")
	require.Contains(t, []string{"pending", "running"}, st.State)

	// The window.
	rows0, t0 := s.rateRowsDone(rateVersion)
	// How fast the pool went from the run's start to the window: the
	// workers' first budgets and shares, before all counted each other.
	var sinceStart float64
	require.NoError(t, s.pool.QueryRow(context.Background(),
		`SELECT extract(epoch FROM now() - started_at)::float8 FROM backfill_runs WHERE version = $1 ORDER BY run_number DESC LIMIT 1`,
		rateVersion).Scan(&sinceStart))
	var (
		rowsKill      int64
		tKill         time.Time
		fallbackAfter time.Duration
		midMode       string
	)
	if sc.kill {
		time.Sleep(time.Until(t0.Add(rateKillAt)))
		rowsKill, tKill = s.rateRowsDone(rateVersion)
		require.NoError(t, rds.Kill())
		killed := time.Now()
		var dbKilled time.Time
		require.NoError(t, s.pool.QueryRow(context.Background(), `SELECT now()`).Scan(&dbKilled))
		// Each worker falls back at its next Take and reports it at its
		// next beat.
		fallbackAfter = s.waitFor("every worker reporting "+batches.RateLimitShareUnreachable, 8*time.Second, func() (bool, error) {
			n, err := s.rateWorkersReporting(batches.RateLimitShareUnreachable, dbKilled)
			return n == rateWorkers, err
		})
		t.Logf("all workers report %q %.2fs after the kill", batches.RateLimitShareUnreachable, time.Since(killed).Seconds())
		midMode = s.rateStatus().RateLimit
		require.Equal(t, batches.RateLimitShareUnreachable, midMode, "status rate_limit after Redis was killed")
	} else {
		time.Sleep(time.Until(t0.Add(rateWindow / 2)))
		midMode = s.rateStatus().RateLimit
		require.Equal(t, sc.mode, midMode, "status rate_limit in the window")
	}
	time.Sleep(time.Until(t0.Add(rateWindow)))
	rows1, t1 := s.rateRowsDone(rateVersion)
	end := s.rateStatus()
	requireRunning(t, workers...)
	require.Contains(t, []string{"pending", "running"}, end.State,
		"the run must still be going at the end of the window; make the table bigger")

	elapsed := t1.Sub(t0)
	measured := float64(rows1-rows0) / elapsed.Seconds()
	ratio := measured / poolRate
	kv := []any{"rows_per_second", fmt.Sprintf("%.0f", measured), "ratio", fmt.Sprintf("%.3f", ratio),
		"rows", rows1 - rows0, "window", elapsed, "mode", strconv.Quote(midMode),
		"status_rows_per_second", fmt.Sprintf("%.0f", end.RowsPerSecond),
		"warm_up_rows_per_second", fmt.Sprintf("%.0f", float64(rows0)/sinceStart), "warm_up", time.Duration(sinceStart * float64(time.Second)),
		"set_up", setUp}
	if sc.kill {
		before := float64(rowsKill-rows0) / tKill.Sub(t0).Seconds()
		after := float64(rows1-rowsKill) / t1.Sub(tKill).Seconds()
		kv = append(kv, "before_kill_rows_per_second", fmt.Sprintf("%.0f", before),
			"after_kill_rows_per_second", fmt.Sprintf("%.0f", after), "fallback_reported_after", fallbackAfter)
	}
	figure(t, "pool-rate-"+sc.name, kv...)

	stopWorkers(t, workers...)
	s.rateCheckAtMostOnce(rateVersion)
	require.InDelta(t, 1, ratio, rateTolerance,
		"%d workers at rate %d must together hold it within %.0f%% over %s: measured %.0f rows/s (%d rows in %s)",
		rateWorkers, poolRate, rateTolerance*100, rateWindow, measured, rows1-rows0, elapsed)
}

// setupPoolRate creates counters with rateRows rows, writes the pool-rate
// backfill and enqueues it with "enqueue pending".
func (s *scenario) setupPoolRate() {
	s.t.Helper()
	s.rows = rateRows
	s.exec(`CREATE TABLE counters (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO counters (id) SELECT g FROM generate_series(1, ` + strconv.Itoa(rateRows) + `) g;
ANALYZE counters;`)
	content := fmt.Sprintf(poolRateFile, rateBatch, ratePartitions, poolRate)
	path := filepath.Join(s.dir, fmt.Sprintf("%d_pool_rate.sql", rateVersion))
	require.NoError(s.t, os.WriteFile(path, []byte(content), 0o644))
	res := s.enqueue(30*time.Second, "pending")
	require.Zero(s.t, res.Code, "enqueue pending: %s", res.Output())
}

// rateRowsDone reads the rows the partitions of version's latest run recorded
// as done, and when it read them.
func (s *scenario) rateRowsDone(version int64) (int64, time.Time) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int64
	err := s.pool.QueryRow(ctx, `
SELECT coalesce(sum(bp.rows_done), 0)::bigint
FROM backfill_partitions bp
WHERE bp.run_id = (SELECT id FROM backfill_runs WHERE version = $1 ORDER BY run_number DESC LIMIT 1)`, version).Scan(&n)
	at := time.Now()
	require.NoError(s.t, err)
	return n, at
}

// rateWorkersRunning counts the distinct workers that run a job of version's
// latest run now.
func (s *scenario) rateWorkersRunning(version int64) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var n int
	err := s.pool.QueryRow(ctx, `
SELECT count(DISTINCT j.attempted_by[array_length(j.attempted_by, 1)])
FROM backfill_partitions bp
JOIN river_job j ON j.id = bp.job_id AND j.state = 'running'
WHERE bp.run_id = (SELECT id FROM backfill_runs WHERE version = $1 ORDER BY run_number DESC LIMIT 1)`, version).Scan(&n)
	return n, err
}

// rateWorkersReporting counts the workers whose last heartbeat, after since
// (the database's clock), reported mode.
func (s *scenario) rateWorkersReporting(mode string, since time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM backfill_workers WHERE heartbeat_at > $1 AND rate_limit = $2`,
		since, mode).Scan(&n)
	return n, err
}

// rateStatus runs "enqueue status --json" for the pool-rate backfill and
// returns its latest run.
func (s *scenario) rateStatus() poolRateStatus {
	s.t.Helper()
	res := s.enqueue(30*time.Second, "status", "--json", strconv.Itoa(rateVersion))
	require.Zero(s.t, res.Code, "enqueue status: %s", res.Output())
	var runs []poolRateStatus
	require.NoError(s.t, json.Unmarshal([]byte(res.Stdout), &runs), res.Stdout)
	require.NotEmpty(s.t, runs)
	return runs[len(runs)-1]
}

// rateCheckAtMostOnce requires, with the workers stopped, that no row of
// counters was processed twice and that the rows processed are those the
// run recorded as done; if the run completed, every row exactly once.
func (s *scenario) rateCheckAtMostOnce(version int64) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var over, once int64
	var maxN int
	require.NoError(s.t, s.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE n > 1), count(*) FILTER (WHERE n = 1), coalesce(max(n), 0) FROM counters`).
		Scan(&over, &once, &maxN))
	require.Zero(s.t, over, "no row processed twice: %d rows have n > 1 (up to %d)", over, maxN)
	done, _ := s.rateRowsDone(version)
	require.Equal(s.t, done, once, "rows processed (n = 1) against the run's rows_done")
	p, err := s.progressOf(version)
	require.NoError(s.t, err)
	if p.State == "completed" {
		s.checkExactlyOnce(version)
	}
	s.t.Logf("after the workers stopped: %d rows processed once, none twice, run %s", once, p.State)
}
