package faults_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestColumnRenamedMidRun renames the column the statement writes while the
// run is going: its batches fail with SQLSTATE 42703 (undefined column), the
// run fails with that error in "enqueue status --json", and once the column
// has its name back "enqueue retry" completes the run, every row exactly once.
func TestColumnRenamedMidRun(t *testing.T) {
	t.Parallel()
	testRenamedMidRun(t, "column-rename",
		`ALTER TABLE counters RENAME COLUMN n TO n_away`,
		`ALTER TABLE counters RENAME COLUMN n_away TO n`,
		"SQLSTATE 42703", `column "n" does not exist`)
}

// TestTableRenamedMidRun does the same with the table renamed away (dropping
// it would lose the rows): SQLSTATE 42P01 (undefined table).
func TestTableRenamedMidRun(t *testing.T) {
	t.Parallel()
	testRenamedMidRun(t, "table-rename",
		`ALTER TABLE counters RENAME TO counters_away`,
		`ALTER TABLE counters_away RENAME TO counters`,
		"SQLSTATE 42P01", `relation "counters" does not exist`)
}

func testRenamedMidRun(t *testing.T, name, breakSQL, repairSQL, sqlstate, message string) {
	s := newScenario(t)
	// Three attempts: a batch fails for good after about 1 s + 2 s of backoff.
	s.setupCounters(pgRows, pgRate, 3)
	w1, w2 := s.worker("w1", nil), s.worker("w2", nil)
	version := strconv.Itoa(countVersion)

	before := s.waitRows(countVersion, pgRows/5)
	broken := time.Now()
	s.exec(breakSQL)

	res := s.enqueue(60*time.Second, "wait", version, "--timeout", "45s", "--progress-every", "2s")
	require.Equal(t, 1, res.Code, "enqueue wait must report the run failed (exit 1):\n%s", res.Output())
	failedAfter := time.Since(broken)
	t.Logf("enqueue wait said:\n%s", res.Output())
	require.Contains(t, res.Output(), sqlstate, "wait names the error")

	st, out := s.status(countVersion)
	require.Equal(t, "failed", st.State, out.Stdout)
	require.NotNil(t, st.LastError, out.Stdout)
	t.Logf("status --json last_error: %s", *st.LastError)
	require.Contains(t, *st.LastError, sqlstate)
	require.Contains(t, *st.LastError, message)
	require.Positive(t, st.BatchesFailed, out.Stdout)
	require.Less(t, st.RowsDone, int64(pgRows), "the run must have failed before it finished")
	require.Zero(t, countOver(t, s), "no row twice after the failures")
	failedBatches := st.BatchesFailed

	s.exec(repairSQL)
	retried := time.Now()
	res = s.enqueue(30*time.Second, "retry", version)
	require.Zero(t, res.Code, "enqueue retry: %s", res.Output())
	s.waitCompleted(countVersion)
	done := time.Since(retried)
	requireRunning(t, w1, w2)
	s.checkExactlyOnce(countVersion)
	st, _ = s.status(countVersion)
	require.Nil(t, st.LastError, "a completed run shows no error")
	stopWorkers(t, w1, w2)
	figure(t, name, "rows_before", before.RowsDone, "failed_after", failedAfter, "failed_partitions", failedBatches,
		"completed_after_retry", done)
}

func countOver(t *testing.T, s *scenario) int64 {
	t.Helper()
	var n int64
	table := "counters"
	// The table may be renamed away at this point.
	require.NoError(t, s.pool.QueryRow(t.Context(), `SELECT coalesce(to_regclass('counters'), to_regclass('counters_away'))::text`).Scan(&table))
	col := "n"
	var hasN bool
	require.NoError(t, s.pool.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'n')`, table).Scan(&hasN))
	if !hasN {
		col = "n_away"
	}
	require.NoError(t, s.pool.QueryRow(t.Context(), `SELECT count(*) FROM `+strings.ReplaceAll(table, `"`, ``)+` WHERE `+col+` > 1`).Scan(&n))
	return n
}
