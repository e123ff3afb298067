package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/faults"
)

func TestMain(m *testing.M) {
	code := m.Run()
	faults.RemoveBinaries()
	os.Exit(code)
}

// Worker settings short enough for tests: a job works batches for a quarter
// of its timeout (1 s) and then hands over; a job of a crashed worker is run
// again after 6 s. Two jobs at a time, so that two workers share the 4
// partitions of the counting backfill rather than one taking them all.
var fastWorker = []string{"--concurrency", "2", "--job-timeout", "4s", "--rescue-after", "6s"}

// countVersion is the counting backfill's version.
const countVersion = 20260401000000

// countingFile increments a per-row counter: at the end every row must be 1.
const countingFile = `-- Counts how often each row was processed.
-- table: counters
-- key: id
-- batch: 100
-- partitions: 4
-- rate: %d
-- attempts: %d
UPDATE counters SET n = n %s WHERE id BETWEEN @first AND @last;
`

// scenario is a private cluster with the schema installed, a backfill
// directory, and the binaries.
type scenario struct {
	t    testing.TB
	pg   *faults.PG
	bins faults.Binaries
	url  string
	pool *pgxpool.Pool
	dir  string
	rows int
}

func newScenario(t testing.TB) *scenario {
	t.Helper()
	s := &scenario{t: t, bins: faults.Build(t), pg: faults.NewPG(t), dir: t.TempDir()}
	s.url = s.pg.URL("postgres")
	s.pool = s.pg.Pool("postgres")
	res := s.enqueue(60*time.Second, "migrate")
	require.Zero(t, res.Code, "enqueue migrate: %s", res.Output())
	return s
}

// env is what the binaries get.
func (s *scenario) env() []string {
	return []string{"DATABASE_URL=" + s.url, "BACKFILL_DIR=" + s.dir, "LOG_LEVEL=", "LOG_FORMAT=", "REDIS_URL="}
}

// enqueue runs the enqueue binary against the private cluster.
func (s *scenario) enqueue(timeout time.Duration, args ...string) faults.Result {
	s.t.Helper()
	return faults.Run(s.t, timeout, s.env(), s.bins.Enqueue, args...)
}

// worker starts a worker process with the fast settings.
func (s *scenario) worker(name string, env []string, args ...string) *faults.Process {
	s.t.Helper()
	return faults.StartWorker(s.t, s.bins, name, append(s.env(), env...), append(append([]string{}, fastWorker...), args...)...)
}

// countingFilePath is where the counting backfill's file lives.
func (s *scenario) countingFilePath() string {
	return filepath.Join(s.dir, fmt.Sprintf("%d_count_rows.sql", countVersion))
}

// setupCounters creates the table counters with rows rows whose n is 0,
// writes the counting backfill with rate and attempts, and enqueues it with
// "enqueue pending".
func (s *scenario) setupCounters(rows, rate, attempts int) {
	s.t.Helper()
	s.rows = rows
	s.exec(`CREATE TABLE counters (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO counters (id) SELECT g FROM generate_series(1, ` + strconv.Itoa(rows) + `) g;
ANALYZE counters;`)
	s.writeCountingFile(rate, attempts, "+ 1")
	res := s.enqueue(30*time.Second, "pending")
	require.Zero(s.t, res.Code, "enqueue pending: %s", res.Output())
}

func (s *scenario) writeCountingFile(rate, attempts int, increment string) {
	s.t.Helper()
	content := fmt.Sprintf(countingFile, rate, attempts, increment)
	require.NoError(s.t, os.WriteFile(s.countingFilePath(), []byte(content), 0o644))
}

func (s *scenario) exec(sql string, args ...any) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.pool.Exec(ctx, sql, args...)
	require.NoError(s.t, err, sql)
}

// progress is the latest run of version as status has it.
type progress struct {
	State        string
	RowsDone     int64
	BatchesDone  int64
	MaxAttempts  int64 // highest attempts count of an unfinished partition
	PartitionErr string
}

// progressOf reads the progress of version's latest run; it fails while the
// server is down.
func (s *scenario) progressOf(version int64) (progress, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var p progress
	runs, err := batches.ListStatus(ctx, s.pool, &version)
	if err != nil {
		return p, err
	}
	if len(runs) == 0 {
		return p, fmt.Errorf("version %d has no run", version)
	}
	st := runs[len(runs)-1]
	p.State, p.RowsDone, p.BatchesDone = string(st.State), st.RowsDone, st.BatchesDone
	err = s.pool.QueryRow(ctx, `
SELECT coalesce(max(bp.attempts), 0),
	coalesce((array_agg(bp.last_error ORDER BY bp.updated_at DESC) FILTER (WHERE bp.last_error IS NOT NULL))[1], '')
FROM backfill_partitions bp JOIN backfill_runs r ON r.id = bp.run_id
WHERE r.version = $1 AND r.run_number = $2`, version, st.RunNumber).Scan(&p.MaxAttempts, &p.PartitionErr)
	return p, err
}

// waitFor polls cond every 25 ms until it holds, failing the test after
// timeout. Errors of cond (the server is down, say) count as "not yet".
func (s *scenario) waitFor(what string, timeout time.Duration, cond func() (bool, error)) time.Duration {
	s.t.Helper()
	started := time.Now()
	var lastErr error
	for time.Since(started) < timeout {
		ok, err := cond()
		if err == nil && ok {
			return time.Since(started)
		}
		lastErr = err
		time.Sleep(25 * time.Millisecond)
	}
	s.t.Fatalf("%s: not within %s (last error: %v)", what, timeout, lastErr)
	return 0
}

// waitRows waits until version's latest run has done at least n rows, and
// fails the test if it finished first: the fault would not hit it mid-run.
func (s *scenario) waitRows(version int64, n int64) progress {
	s.t.Helper()
	var p progress
	s.waitFor(fmt.Sprintf("version %d reaching %d rows", version, n), 60*time.Second, func() (bool, error) {
		var err error
		p, err = s.progressOf(version)
		return err == nil && p.RowsDone >= n, err
	})
	require.Contains(s.t, []string{"pending", "running"}, p.State,
		"the run must still be going when the fault is injected; make it slower (rate, rows)")
	return p
}

// resumeAfter measures the time from since (the server back up) to the
// first batch committed after it: batches_done grows beyond what it was at
// the first successful read.
func (s *scenario) resumeAfter(version int64, since time.Time) time.Duration {
	s.t.Helper()
	baseline := int64(-1)
	var committed time.Time
	s.waitFor("a batch committed after the fault", 60*time.Second, func() (bool, error) {
		p, err := s.progressOf(version)
		if err != nil {
			return false, err
		}
		if p.State == "completed" && baseline < 0 {
			return false, fmt.Errorf("the run completed before the first read")
		}
		if baseline < 0 {
			baseline = p.BatchesDone
			return false, nil
		}
		if p.BatchesDone > baseline {
			committed = time.Now()
			return true, nil
		}
		return false, nil
	})
	return committed.Sub(since)
}

// waitCompleted runs "enqueue wait VERSION --timeout 90s" and requires exit 0.
func (s *scenario) waitCompleted(version int64) time.Duration {
	s.t.Helper()
	started := time.Now()
	res := s.enqueue(100*time.Second, "wait", strconv.FormatInt(version, 10), "--timeout", "90s", "--progress-every", "2s")
	require.Zero(s.t, res.Code, "enqueue wait %d must report completed:\n%s", version, res.Output())
	return time.Since(started)
}

// runStatus is what the tests read of "enqueue status --json".
type runStatus struct {
	Version       int64   `json:"version"`
	Run           int     `json:"run"`
	State         string  `json:"state"`
	RowsDone      int64   `json:"rows_done"`
	BatchesDone   int64   `json:"batches_done"`
	BatchesFailed int64   `json:"batches_failed"`
	LastError     *string `json:"last_error"`
	Drift         string  `json:"drift"`
}

// status runs "enqueue status --json VERSION" and returns its latest run.
func (s *scenario) status(version int64) (runStatus, faults.Result) {
	s.t.Helper()
	res := s.enqueue(30*time.Second, "status", "--json", strconv.FormatInt(version, 10))
	require.Zero(s.t, res.Code, "enqueue status: %s", res.Output())
	var runs []runStatus
	require.NoError(s.t, json.Unmarshal([]byte(res.Stdout), &runs), res.Stdout)
	require.NotEmpty(s.t, runs)
	return runs[len(runs)-1], res
}

// checkExactlyOnce requires the latest run of version completed with every
// row of counters, and every row's counter at exactly 1.
func (s *scenario) checkExactlyOnce(version int64) {
	s.t.Helper()
	st, _ := s.status(version)
	require.Equal(s.t, "completed", st.State)
	require.Equal(s.t, int64(s.rows), st.RowsDone, "rows_done")
	var total, wrong, over int64
	var minN, maxN int
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(s.t, s.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE n <> 1), count(*) FILTER (WHERE n > 1), min(n), max(n) FROM counters`).
		Scan(&total, &wrong, &over, &minN, &maxN))
	require.Equal(s.t, int64(s.rows), total, "rows in counters")
	require.Zero(s.t, wrong, "every row exactly once: %d rows have n <> 1 (%d above 1; n from %d to %d)", wrong, over, minN, maxN)
}

// batchLines counts the batches a worker started with --log-level debug
// logged.
func batchLines(w *faults.Process) int {
	n := 0
	for _, l := range w.Stderr.Lines() {
		if strings.Contains(l.Text, `msg="batch done"`) {
			n++
		}
	}
	return n
}

// stopWorkers stops each worker with SIGTERM and requires exit 0 (so none
// had exited before) within 15 s.
func stopWorkers(t testing.TB, workers ...*faults.Process) {
	t.Helper()
	requireRunning(t, workers...)
	for _, w := range workers {
		took, ok := w.Stop(15 * time.Second)
		require.True(t, ok, "worker %s did not exit within 15s of SIGTERM", w.Name)
		require.NoError(t, w.Err(), "worker %s must exit 0 on SIGTERM (took %s)", w.Name, took)
	}
}

// requireRunning fails the test when a worker exited.
func requireRunning(t testing.TB, workers ...*faults.Process) {
	t.Helper()
	for _, w := range workers {
		if !w.Running() {
			t.Fatalf("worker %s exited (%v); workers must survive the fault:\n%s", w.Name, w.Err(), w.Stderr.String())
		}
	}
}

// figure logs a measured figure in the form the lead quotes; a benchmark
// prints it on stdout too, since go test keeps only the first lines of a
// benchmark's log.
func figure(t testing.TB, name string, kv ...any) {
	t.Helper()
	var b strings.Builder
	b.WriteString("FIGURE ")
	b.WriteString(name)
	for i := 0; i+1 < len(kv); i += 2 {
		v := kv[i+1]
		if d, ok := v.(time.Duration); ok {
			v = fmt.Sprintf("%.2fs", d.Seconds())
		}
		fmt.Fprintf(&b, " %s=%v", kv[i], v)
	}
	t.Log(b.String())
	if _, ok := t.(*testing.B); ok {
		fmt.Println("    " + b.String())
	}
}
