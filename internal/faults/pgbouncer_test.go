package faults_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/internal/faults"
)

// TestPgBouncerHarness checks the harness itself: queries through
// NewPgBouncer reach the private cluster, and it really pools in
// transaction mode: with one server connection, two clients preparing a
// statement of the same name collide on it (SQLSTATE 42P05), which a
// session-pooled or direct connection never does.
func TestPgBouncerHarness(t *testing.T) {
	t.Parallel()
	pg := faults.NewPG(t)
	bouncer := faults.NewPgBouncer(t, pg, faults.PoolSize(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	a, err := pgx.Connect(ctx, bouncer.URL("postgres"))
	require.NoError(t, err)
	defer a.Close(context.Background())
	b, err := pgx.Connect(ctx, bouncer.URL("postgres"))
	require.NoError(t, err)
	defer b.Close(context.Background())

	var port int
	require.NoError(t, a.QueryRow(ctx, `SELECT inet_server_port()`).Scan(&port))
	require.Equal(t, pg.Port(), port, "PgBouncer must pass queries to the private cluster")

	_, err = a.Prepare(ctx, "same_name", "SELECT 1")
	require.NoError(t, err)
	_, err = b.Prepare(ctx, "same_name", "SELECT 2")
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr, "a second client's statement of the same name must land on the same server connection")
	require.Equal(t, "42P05", pgErr.Code)

	pools, err := bouncer.Pools(ctx)
	require.NoError(t, err)
	var found bool
	for _, p := range pools {
		if p.Database == "postgres" && p.User == "postgres" {
			found = true
			require.LessOrEqual(t, p.Servers(), 1, "default_pool_size 1: %+v", p)
		}
	}
	require.True(t, found, "SHOW POOLS has the postgres pool: %+v", pools)
	require.NoError(t, bouncer.Stop())
}

// The backfills of TestBehindPgBouncerTransactionMode: eight versions, each
// incrementing its own column of counters.
const (
	bouncerRows     = 20000
	bouncerVersions = 8
	bouncerFirst    = 20260501000001
	// Rows per second of each run: about 10 s per run, so that pause and
	// resume land mid-run.
	bouncerRate = 2000
	// Rows per batch and partitions per run, as in bouncerFile.
	bouncerBatch      = 250
	bouncerPartitions = 4
)

const bouncerFile = `-- Counts how often each row was processed, in column n%d.
-- table: counters
-- key: id
-- batch: %d
-- partitions: %d
-- rate: %d
-- attempts: 25
UPDATE counters SET n%d = n%d + 1 WHERE id BETWEEN @first AND @last;
`

// TestBehindPgBouncerTransactionMode runs everything a deploy and the
// workers do through a real PgBouncer in transaction mode, with fewer server
// connections than clients, so that consecutive transactions of one client
// run on different server connections and one server connection serves many
// clients: concurrent migrate, concurrent pending, two workers, pause and
// resume, status and wait; in the end every row of every counter is exactly 1.
func TestBehindPgBouncerTransactionMode(t *testing.T) {
	t.Parallel()
	bins := faults.Build(t)
	pg := faults.NewPG(t)
	const poolSize = 4
	bouncer := faults.NewPgBouncer(t, pg, faults.PoolSize(poolSize))
	// s.enqueue and s.worker go through PgBouncer; s.pool (checks, setup)
	// is a direct connection to the cluster.
	s := &scenario{t: t, bins: bins, pg: pg, url: bouncer.URL("postgres"), pool: pg.Pool("postgres"), dir: t.TempDir(), rows: bouncerRows}
	sampler := samplePools(t, bouncer)

	// (a) Four migrations at once.
	outs := runAll(t, 4, 60*time.Second, s.env(), bins.Enqueue, "migrate")
	requireAllExitZero(t, "(a) enqueue migrate, 4 processes at once through PgBouncer", outs)
	figure(t, "pgbouncer-migrate-concurrent", "processes", 4, "slowest", slowest(outs), "fastest", fastest(outs))
	checkSchemaInstalledOnce(t, s)
	requireNoAdvisoryLocks(t, s, "after the 4 concurrent migrations exited")

	// (f) One more right after: nothing may be left holding the migration
	// lock.
	again := runAll(t, 1, 10*time.Second, s.env(), bins.Enqueue, "migrate")
	requireAllExitZero(t, "(f) enqueue migrate right after the 4 concurrent ones (must return within 10s)", again)
	figure(t, "pgbouncer-migrate-again", "took", again[0].Took)
	checkSchemaInstalledOnce(t, s)
	requireNoAdvisoryLocks(t, s, "after the fifth migration exited")

	// (b) Eight versions, eight processes of pending at once.
	cols := make([]string, bouncerVersions)
	versions := make([]string, bouncerVersions)
	for i := range bouncerVersions {
		k := i + 1
		cols[i] = fmt.Sprintf("n%d int NOT NULL DEFAULT 0", k)
		versions[i] = strconv.Itoa(bouncerFirst + i)
		content := fmt.Sprintf(bouncerFile, k, bouncerBatch, bouncerPartitions, bouncerRate, k, k)
		path := filepath.Join(s.dir, fmt.Sprintf("%s_count_n%d.sql", versions[i], k))
		require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	}
	s.exec(`CREATE TABLE counters (id bigint PRIMARY KEY, ` + strings.Join(cols, ", ") + `);
INSERT INTO counters (id) SELECT g FROM generate_series(1, ` + strconv.Itoa(bouncerRows) + `) g;
ANALYZE counters;`)
	outs = runAll(t, 8, 60*time.Second, s.env(), bins.Enqueue, "pending")
	requireAllExitZero(t, "(b) enqueue pending, 8 processes at once through PgBouncer", outs)
	figure(t, "pgbouncer-pending-concurrent", "processes", 8, "versions", bouncerVersions, "slowest", slowest(outs), "fastest", fastest(outs))
	checkEnqueuedOnce(t, s, outs, versions)

	// (c) Two workers behind PgBouncer, with the README's one setting: River
	// polls instead of LISTENing.
	runStarted := time.Now()
	pollOnly := []string{"DATABASE_POOL_MODE=transaction"}
	w1 := s.worker("w1", pollOnly, "--concurrency", "8")
	w2 := s.worker("w2", pollOnly, "--concurrency", "8")
	workers := []*faults.Process{w1, w2}

	// (d) Pause and resume two versions mid-run.
	for _, i := range []int{1, 5} {
		v := versions[i]
		p := waitProgress(t, s, workers, int64(bouncerFirst+i), 500)
		require.Contains(t, []string{"pending", "running"}, p.State,
			"(d) version %s finished before it could be paused mid-run; make the runs slower", v)
		res := runOne(t, 30*time.Second, s.env(), bins.Enqueue, "pause", v)
		requireExitZero(t, "(d) enqueue pause "+v+" through PgBouncer", res)
		paused := statusOf(t, s, v)
		require.Equal(t, "paused", paused.State, "(d) state after enqueue pause %s", v)
		time.Sleep(time.Second)
		requireRunning(t, workers...)
		later := statusOf(t, s, v)
		require.Equal(t, "paused", later.State, "(d) state 1s after enqueue pause %s", v)
		// At most the batches in flight at the pause (one per partition)
		// commit after it.
		require.LessOrEqual(t, later.RowsDone-paused.RowsDone, int64(bouncerPartitions*bouncerBatch),
			"(d) version %s kept working while paused: %d rows at the pause, %d a second later", v, paused.RowsDone, later.RowsDone)
		res = runOne(t, 30*time.Second, s.env(), bins.Enqueue, "resume", v)
		requireExitZero(t, "(d) enqueue resume "+v+" through PgBouncer", res)
		resumed := waitProgress(t, s, workers, int64(bouncerFirst+i), later.RowsDone+1)
		figure(t, "pgbouncer-pause-resume", "version", v, "rows_before_pause", p.RowsDone, "rows_at_pause", paused.RowsDone,
			"rows_1s_later", later.RowsDone, "rows_after_resume", resumed.RowsDone)
	}

	// (d) status --json of every run, mid-run.
	res := runOne(t, 30*time.Second, s.env(), bins.Enqueue, "status", "--json")
	requireExitZero(t, "(d) enqueue status --json through PgBouncer", res)
	var all []runStatus
	require.NoError(t, json.Unmarshal([]byte(res.Stdout), &all), "(d) enqueue status --json must print JSON: %s", res.Stdout)
	require.Len(t, all, bouncerVersions, "(d) enqueue status --json: one run per version: %s", res.Stdout)

	// (d) wait for all of them.
	requireRunning(t, workers...)
	res = runOne(t, 150*time.Second, s.env(), bins.Enqueue, append(append([]string{"wait"}, versions...), "--timeout", "120s", "--progress-every", "5s")...)
	requireExitZero(t, "(d) enqueue wait ALL --timeout 120s through PgBouncer", res)
	runTook := time.Since(runStarted)
	requireRunning(t, workers...)

	// (e) Every run completed, every row of every counter exactly 1.
	res = runOne(t, 30*time.Second, s.env(), bins.Enqueue, "status", "--json")
	requireExitZero(t, "(e) enqueue status --json after wait", res)
	all = nil
	require.NoError(t, json.Unmarshal([]byte(res.Stdout), &all), res.Stdout)
	require.Len(t, all, bouncerVersions, res.Stdout)
	for _, st := range all {
		require.Equal(t, "completed", st.State, "(e) version %d", st.Version)
		require.Equal(t, int64(bouncerRows), st.RowsDone, "(e) rows_done of version %d", st.Version)
		require.Zero(t, st.BatchesFailed, "(e) batches_failed of version %d", st.Version)
	}
	checkCountersExactlyOnce(t, s)
	stopWorkers(t, workers...)
	peak := sampler()
	figure(t, "pgbouncer-run", "versions", bouncerVersions, "rows_each", bouncerRows, "workers", 2,
		"duration", runTook, "peak_clients", peak.clients, "peak_waiting", peak.waiting, "peak_servers", peak.servers)
	require.LessOrEqual(t, peak.servers, poolSize, "PgBouncer holds at most default_pool_size server connections")
}

// outcome is how one process of runAll ended.
type outcome struct {
	faults.Result
	Took     time.Duration
	Timeout  time.Duration
	TimedOut bool
	Err      error // it could not be started, or was killed
}

// runAll starts n processes of path args at once and waits for all of them,
// each for at most timeout (then it is killed). Unlike faults.Run it may be
// used for processes in parallel: it never fails t itself.
func runAll(t *testing.T, n int, timeout time.Duration, env []string, path string, args ...string) []outcome {
	t.Helper()
	outs := make([]outcome, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, path, args...)
			cmd.Env = append(os.Environ(), env...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			<-start
			began := time.Now()
			err := cmd.Run()
			o := outcome{Took: time.Since(began), Timeout: timeout, Result: faults.Result{Stdout: stdout.String(), Stderr: stderr.String(), Code: -1}}
			var exit *exec.ExitError
			switch {
			case err == nil:
				o.Code = 0
			case ctx.Err() != nil:
				o.TimedOut, o.Err = true, err
			case errors.As(err, &exit) && exit.Exited():
				o.Code = exit.ExitCode()
			default:
				o.Err = err
			}
			outs[i] = o
		}()
	}
	close(start)
	wg.Wait()
	return outs
}

func runOne(t *testing.T, timeout time.Duration, env []string, path string, args ...string) outcome {
	t.Helper()
	return runAll(t, 1, timeout, env, path, args...)[0]
}

// describe is one process's end, with its stderr, for a failure message.
func describe(o outcome) string {
	var how string
	switch {
	case o.TimedOut:
		how = fmt.Sprintf("did not exit within %s (killed)", o.Timeout)
	case o.Err != nil:
		how = "did not run to its end: " + o.Err.Error()
	default:
		how = fmt.Sprintf("exit %d after %s", o.Code, o.Took.Round(time.Millisecond))
	}
	return fmt.Sprintf("%s\n    stderr: %s\n    stdout: %s", how,
		quoteTail(o.Stderr), quoteTail(o.Stdout))
}

func quoteTail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 3000 {
		s = "..." + s[len(s)-3000:]
	}
	return strconv.Quote(s)
}

func requireExitZero(t *testing.T, step string, o outcome) {
	t.Helper()
	requireAllExitZero(t, step, []outcome{o})
}

// requireAllExitZero fails t when a process did not exit 0, quoting each
// failing one's stderr.
func requireAllExitZero(t *testing.T, step string, outs []outcome) {
	t.Helper()
	var bad []string
	for i, o := range outs {
		if o.Code != 0 {
			bad = append(bad, fmt.Sprintf("  process %d of %d: %s", i+1, len(outs), describe(o)))
		}
	}
	if len(bad) > 0 {
		t.Fatalf("%s: %d of %d processes failed:\n%s", step, len(bad), len(outs), strings.Join(bad, "\n"))
	}
}

func slowest(outs []outcome) time.Duration {
	var d time.Duration
	for _, o := range outs {
		d = max(d, o.Took)
	}
	return d
}

func fastest(outs []outcome) time.Duration {
	d := outs[0].Took
	for _, o := range outs {
		d = min(d, o.Took)
	}
	return d
}

// checkSchemaInstalledOnce requires one row per engine schema step in
// backfill_schema_version: versions 1..N, each once.
func checkSchemaInstalledOnce(t *testing.T, s *scenario) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rows, distinct, lowest, highest int
	require.NoError(t, s.pool.QueryRow(ctx, `
SELECT count(*), count(DISTINCT version), coalesce(min(version), 0), coalesce(max(version), 0)
FROM backfill_schema_version`).Scan(&rows, &distinct, &lowest, &highest),
		"the engine's version table must exist after migrate")
	require.Positive(t, rows, "backfill_schema_version is empty")
	require.True(t, rows == distinct && lowest == 1 && highest == rows,
		"backfill_schema_version must hold steps 1..N once each: %d rows, %d distinct, from %d to %d (a step applied twice by concurrent migrations?)",
		rows, distinct, lowest, highest)
}

// requireNoAdvisoryLocks fails t when a session of the cluster still holds
// an advisory lock once every enqueue exited: behind PgBouncer such a lock
// stays with an idle server connection and blocks the next migration.
func requireNoAdvisoryLocks(t *testing.T, s *scenario, when string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := s.pool.Query(ctx, `
SELECT l.pid, l.objid::text, l.granted, coalesce(a.state, ''), coalesce(left(a.query, 200), '')
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory'`)
	require.NoError(t, err)
	var held []string
	for rows.Next() {
		var pid int
		var objid, state, query string
		var granted bool
		require.NoError(t, rows.Scan(&pid, &objid, &granted, &state, &query))
		held = append(held, fmt.Sprintf("pid %d objid %s granted %v state %q last query %q", pid, objid, granted, state, query))
	}
	require.NoError(t, rows.Err())
	require.Empty(t, held, "advisory locks still held on the cluster %s (a session lock left on a pooled server connection):\n%s",
		when, strings.Join(held, "\n"))
}

// checkEnqueuedOnce requires one run per version (run 1), each enqueued by
// exactly one of the pending processes, with one queue job per partition.
func checkEnqueuedOnce(t *testing.T, s *scenario, outs []outcome, versions []string) {
	t.Helper()
	summary := regexp.MustCompile(`(?m)^(\d+) enqueued, (\d+) already enqueued before$`)
	enqueuedBy := map[string]int{}
	for i, o := range outs {
		m := summary.FindStringSubmatch(o.Stdout)
		require.NotNil(t, m, "(b) pending process %d printed no summary: %s", i+1, describe(o))
		n, _ := strconv.Atoi(m[1])
		already, _ := strconv.Atoi(m[2])
		require.Equal(t, len(versions), n+already, "(b) pending process %d: every version is enqueued or found enqueued: %q", i+1, o.Stdout)
		for _, line := range strings.Split(o.Stdout, "\n") {
			if label, ok := strings.CutPrefix(line, "enqueued "); ok {
				enqueuedBy[label]++
			}
		}
	}
	want := map[string]int{}
	for i, v := range versions {
		want[fmt.Sprintf("%s_count_n%d run 1", v, i+1)] = 1
	}
	require.Equal(t, want, enqueuedBy, "(b) each version enqueued by exactly one process")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var runs, distinct, firsts int
	require.NoError(t, s.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT version), count(*) FILTER (WHERE run_number = 1) FROM backfill_runs`).
		Scan(&runs, &distinct, &firsts))
	require.Equal(t, len(versions), runs, "(b) rows in backfill_runs")
	require.Equal(t, len(versions), distinct, "(b) versions in backfill_runs")
	require.Equal(t, len(versions), firsts, "(b) runs with run_number 1")
	var partitions, withJob int
	require.NoError(t, s.pool.QueryRow(ctx, `
SELECT count(*), count(*) FILTER (WHERE EXISTS (
	SELECT 1 FROM river_job j WHERE j.id = p.job_id
	AND (j.args->>'run_id')::bigint = p.run_id AND (j.args->>'partition')::int = p.partition))
FROM backfill_partitions p`).Scan(&partitions, &withJob))
	require.Positive(t, partitions, "(b) partitions planned")
	require.Equal(t, partitions, withJob, "(b) every partition has its queue job")
	var jobs int
	require.NoError(t, s.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE args ? 'run_id'`).Scan(&jobs))
	require.Equal(t, partitions, jobs, "(b) one queue job per partition, none enqueued twice")
}

// waitProgress waits until version has done at least rows rows, reading
// through the direct connection; it fails at once when a worker exited, with
// its stderr.
func waitProgress(t *testing.T, s *scenario, workers []*faults.Process, version int64, rows int64) progress {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var p progress
	var err error
	for {
		requireRunning(t, workers...)
		p, err = s.progressOf(version)
		if err == nil && (p.RowsDone >= rows || p.State == "completed") {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("(c/d) version %d did not reach %d rows within 60s behind PgBouncer: %+v (last error: %v)", version, rows, p, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// statusOf runs "enqueue status --json VERSION" through PgBouncer and
// returns the latest run.
func statusOf(t *testing.T, s *scenario, version string) runStatus {
	t.Helper()
	res := runOne(t, 30*time.Second, s.env(), s.bins.Enqueue, "status", "--json", version)
	requireExitZero(t, "(d) enqueue status --json "+version+" through PgBouncer", res)
	var runs []runStatus
	require.NoError(t, json.Unmarshal([]byte(res.Stdout), &runs), "(d) enqueue status --json %s: %s", version, res.Stdout)
	require.NotEmpty(t, runs, "(d) enqueue status --json %s printed no run", version)
	return runs[len(runs)-1]
}

// checkCountersExactlyOnce requires every row's n1..n8 at exactly 1.
func checkCountersExactlyOnce(t *testing.T, s *scenario) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for k := 1; k <= bouncerVersions; k++ {
		col := fmt.Sprintf("n%d", k)
		var total, zero, over int64
		require.NoError(t, s.pool.QueryRow(ctx, fmt.Sprintf(
			`SELECT count(*), count(*) FILTER (WHERE %[1]s = 0), count(*) FILTER (WHERE %[1]s > 1) FROM counters`, col)).
			Scan(&total, &zero, &over))
		require.Equal(t, int64(bouncerRows), total, "(e) rows in counters")
		require.True(t, zero == 0 && over == 0,
			"(e) every row exactly once: version %d (column %s) left %d rows at 0 and %d above 1", bouncerFirst+k-1, col, zero, over)
	}
}

type poolPeak struct{ clients, waiting, servers int }

// samplePools reads SHOW POOLS every 200 ms until the returned function is
// called, which returns the peaks of the postgres database's pool.
func samplePools(t *testing.T, b *faults.PgBouncer) func() poolPeak {
	var (
		mu   sync.Mutex
		peak poolPeak
		done = make(chan struct{})
		end  = make(chan struct{})
	)
	go func() {
		defer close(end)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			pools, err := b.Pools(ctx)
			cancel()
			if err == nil {
				mu.Lock()
				for _, p := range pools {
					if p.Database == "postgres" {
						peak.clients = max(peak.clients, p.ClientsActive+p.ClientsWaiting)
						peak.waiting = max(peak.waiting, p.ClientsWaiting)
						peak.servers = max(peak.servers, p.Servers())
					}
				}
				mu.Unlock()
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	stop := func() poolPeak {
		once.Do(func() { close(done); <-end })
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
	t.Cleanup(func() { stop() })
	return stop
}
