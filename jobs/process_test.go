package jobs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

var (
	buildOnce  sync.Once
	workerPath string
	buildErr   error
)

// workerBinary builds cmd/worker once per test run.
func workerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "backfill-worker-bin")
		if err != nil {
			buildErr = err
			return
		}
		workerPath = filepath.Join(dir, "worker")
		out, err := exec.Command("go", "build", "-o", workerPath, "github.com/backfill/backfill/cmd/worker").CombinedOutput()
		if err != nil {
			buildErr = err
			workerPath = string(out)
		}
	})
	require.NoError(t, buildErr, workerPath)
	return workerPath
}

// workerProcess is a running worker binary.
type workerProcess struct {
	cmd  *exec.Cmd
	logs *bytes.Buffer
	// exited is closed when the process has exited; err is then its result.
	exited chan struct{}
	err    error
}

func startWorkerProcess(t *testing.T, dbURL string, args ...string) *workerProcess {
	t.Helper()
	cmd := exec.Command(workerBinary(t), args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL)
	p := &workerProcess{cmd: cmd, logs: &bytes.Buffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	require.NoError(t, cmd.Start())
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("worker %d output:\n%s", cmd.Process.Pid, p.logs.String())
		}
	})
	return p
}

// waitRows waits until the version's latest run has done at least n rows.
func (b *testBundle) waitRows(t *testing.T, version int64, n int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		runs, err := batches.ListStatus(context.Background(), b.pool, &version)
		require.NoError(t, err)
		if len(runs) > 0 && runs[len(runs)-1].RowsDone >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("version %d did not reach %d rows in %s", version, n, timeout)
}

// countingBackfill is a SQL backfill that increments a per-row counter, runs
// slowly enough to be caught mid-batch, and fails a share of its batches
// after writing (the data-modifying CTE runs before the division by zero).
const countingBackfill = `-- table: counters
-- key: id
-- batch: 100
-- partitions: 4
-- attempts: 25
WITH touched AS (
	UPDATE counters SET n = n + 1 WHERE id BETWEEN @first AND @last RETURNING id
)
SELECT count(*) / (CASE WHEN random() < %s THEN 0 ELSE 1 END), pg_sleep(0.005) FROM touched;
`

func setupCounters(t *testing.T, rows int, failShare string) *testBundle {
	t.Helper()
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE counters (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO counters (id) SELECT g FROM generate_series(1, `+strconv.Itoa(rows)+`) g;
ANALYZE counters;`)
	b.writeFile(t, "9_count.sql", fmt.Sprintf(countingBackfill, failShare))
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)
	return b
}

func TestWorkerProcess_SIGKILLMidRunLosesNothingAndAppliesNothingTwice(t *testing.T) {
	t.Parallel()
	b := setupCounters(t, 30000, "0.05")
	fast := []string{"--concurrency", "4", "--job-timeout", "2s", "--rescue-after", "3s"}

	killed := 0
	for _, until := range []int64{6000, 15000} {
		w := startWorkerProcess(t, b.url, fast...)
		b.waitRows(t, 9, until, 60*time.Second)
		require.NoError(t, w.cmd.Process.Signal(syscall.SIGKILL))
		<-w.exited
		// Jobs the dead worker was in the middle of are still "running".
		if queryInt(t, b.pool, `SELECT count(*) FROM river_job WHERE state = 'running'`) > 0 {
			killed++
		}
		require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM counters WHERE n > 1`))
	}
	require.Positive(t, killed, "a SIGKILL must have hit jobs in flight")

	startWorkerProcess(t, b.url, fast...)
	st := b.waitState(t, 9, batches.StateCompleted, 150*time.Second)
	require.Equal(t, int64(30000), st.RowsDone)
	require.Equal(t, int64(300), st.BatchesDone)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM counters WHERE n <> 1`), "every row exactly once")
}

func TestWorkerProcess_SIGTERMHandsOverAndExitsZero(t *testing.T) {
	t.Parallel()
	b := setupCounters(t, 20000, "0")
	w := startWorkerProcess(t, b.url, "--concurrency", "4", "--shutdown-timeout", "10s")
	b.waitRows(t, 9, 2000, 60*time.Second)

	stopped := time.Now()
	require.NoError(t, w.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-w.exited:
		require.NoError(t, w.err, "worker must exit 0 on SIGTERM")
	case <-time.After(15 * time.Second):
		t.Fatal("worker did not exit within 15s of SIGTERM")
	}
	t.Logf("worker stopped %s after SIGTERM", time.Since(stopped).Round(time.Millisecond))

	// Every partition was handed over: nothing is stuck running, and every
	// unfinished partition has a job ready for the next worker.
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM river_job WHERE state = 'running'`))
	require.Zero(t, queryInt(t, b.pool, `
SELECT count(*) FROM backfill_partitions bp
WHERE bp.state <> 'done' AND NOT EXISTS (SELECT 1 FROM river_job j WHERE j.id = bp.job_id AND j.state = 'available')`))
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM counters WHERE n > 1`))

	startWorkerProcess(t, b.url, "--concurrency", "4")
	b.waitState(t, 9, batches.StateCompleted, 60*time.Second)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM counters WHERE n <> 1`))
}

// After kill -9 of a worker, with every setting at its default, its
// partitions are working again within 30 s: a live worker sees the dead one's
// heartbeat stop and gives its partitions to new jobs (River's own rescue
// would take up to about two minutes). Every row exactly once.
func TestWorkerProcess_RecoversFromKill9WithinThirtySecondsByDefault(t *testing.T) {
	t.Parallel()
	b := setupCounters(t, 30000, "0")
	victim := startWorkerProcess(t, b.url, "--concurrency", "4")
	b.waitRows(t, 9, 3000, 60*time.Second)
	startWorkerProcess(t, b.url, "--concurrency", "4")
	// The second worker finds no free partition: the victim holds all four.
	require.NoError(t, victim.cmd.Process.Signal(syscall.SIGKILL))
	killed := time.Now()
	<-victim.exited
	before := latestStatus(t, b, 9).RowsDone

	deadline := killed.Add(30 * time.Second)
	for latestStatus(t, b, 9).RowsDone <= before+200 {
		require.True(t, time.Now().Before(deadline), "no progress within 30s of kill -9")
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("FIGURE kill-9-recovery-defaults progress_after=%s", time.Since(killed).Round(100*time.Millisecond))
	st := b.waitState(t, 9, batches.StateCompleted, 120*time.Second)
	require.Equal(t, int64(30000), st.RowsDone)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM counters WHERE n <> 1`), "every row exactly once")
}
