package faults_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/internal/faults"
)

// TestBackfillFileEditedThenDeletedMidRun changes the statement in the
// backfill file to "n = n + 100" mid-run, then deletes the file: the workers
// keep running the statement recorded with the run (also a worker started
// after the deletion), so every row ends at exactly 1. status reports the
// edit as drift while the file differs.
func TestBackfillFileEditedThenDeletedMidRun(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	s.setupCounters(pgRows, pgRate, 5)
	w1, w2 := s.worker("w1", nil), s.worker("w2", nil)

	edited := s.waitRows(countVersion, pgRows/5)
	s.writeCountingFile(pgRate, 5, "+ 100")
	st, res := s.status(countVersion)
	require.NotEmpty(t, st.Drift, "status must report the edited file as drift:\n%s", res.Output())
	t.Logf("drift: %s", st.Drift)
	// Batches after the edit.
	deleted := s.waitRows(countVersion, edited.RowsDone+pgRows/5)
	require.NoError(t, os.Remove(s.countingFilePath()))
	// A worker that never saw the file: w1 hands over to it.
	_, ok := w1.Stop(15 * time.Second)
	require.True(t, ok, "w1 did not stop")
	require.NoError(t, w1.Err())
	w3 := s.worker("w3", nil, "--log-level", "debug")

	s.waitCompleted(countVersion)
	requireRunning(t, w2, w3)
	s.checkExactlyOnce(countVersion)
	stopWorkers(t, w2, w3)
	require.Positive(t, batchLines(w3), "w3, started after the file was deleted, must have worked batches")
	figure(t, "file-edit-delete", "rows_at_edit", edited.RowsDone, "rows_at_delete", deleted.RowsDone,
		"w3_batches", batchLines(w3))
}

// TestWorkerSIGTERMMidRun stops one of two workers with SIGTERM mid-run: it
// exits 0 within a second, and the other worker finishes the run, every row
// exactly once.
func TestWorkerSIGTERMMidRun(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	s.setupCounters(pgRows, pgRate, 5)
	// w1 logs every batch, so that the test knows it is in the middle of
	// work.
	w1, w2 := s.worker("w1", nil, "--log-level", "debug"), s.worker("w2", nil)

	before := s.waitRows(countVersion, pgRows/5)
	mark := time.Now()
	s.waitFor("w1 working batches", 30*time.Second, func() (bool, error) {
		for _, l := range w1.Stderr.Between(mark, time.Now()) {
			if strings.Contains(l.Text, `msg="batch done"`) {
				return true, nil
			}
		}
		return false, nil
	})
	took, ok := w1.Stop(15 * time.Second)
	require.True(t, ok, "w1 did not exit within 15s of SIGTERM")
	require.NoError(t, w1.Err(), "w1 must exit 0 on SIGTERM")
	after, err := s.progressOf(countVersion)
	require.NoError(t, err)

	s.waitCompleted(countVersion)
	requireRunning(t, w2)
	s.checkExactlyOnce(countVersion)
	stopWorkers(t, w2)
	figure(t, "sigterm", "rows_before", before.RowsDone, "exit_after", took, "rows_at_exit", after.RowsDone,
		"w1_batches", batchLines(w1))
	require.LessOrEqual(t, took, time.Second, "a worker must exit within 1s of SIGTERM")
}

// TestWorkerSIGTERMDuringRateLimitWait stops a worker with the default job
// timeout (1m, so a job's slice is 10 s) while its jobs wait for the rate
// limit: batches of 100 rows at 100 rows/s over 4 partitions, so after the
// first four batches the partitions wait 1, 2 and 3 s for their next one. It
// must still exit 0 within a second, handing the partitions over; another
// worker then finishes the run, every row exactly once.
func TestWorkerSIGTERMDuringRateLimitWait(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	s.setupCounters(800, 100, 5)
	w1 := faults.StartWorker(t, s.bins, "w1", s.env(), "--concurrency", "4")

	before := s.waitRows(countVersion, 400)
	took, ok := w1.Stop(15 * time.Second)
	require.True(t, ok, "w1 did not exit within 15s of SIGTERM")
	require.NoError(t, w1.Err(), "w1 must exit 0 on SIGTERM")

	w2 := s.worker("w2", nil)
	s.waitCompleted(countVersion)
	s.checkExactlyOnce(countVersion)
	stopWorkers(t, w2)
	figure(t, "sigterm-rate-wait", "rows_before", before.RowsDone, "exit_after", took)
	// A job waiting for the rate limit hands over at once: the wait is paid
	// for, and the next job waits for it instead.
	require.LessOrEqual(t, took, time.Second, "a worker must exit within 1s of SIGTERM, even while its jobs wait for the rate limit")
}
