package faults_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/internal/faults"
)

// A worker keeps its statements prepared on each connection (the server
// parses a batch's statements once per connection), unless it is told the
// pool mode is transaction, or, told nothing, it sees a pooler in between.
// Here, told nothing, behind a transaction-pooling PgBouncer with two
// server connections for the worker's four batches at once: it says why it
// keeps no statement prepared, no batch fails, and every row is counted
// exactly once. Kept prepared there, a statement would be missing from, or
// already exist on, the server session PgBouncer hands a connection next.
func TestWorker_BehindAPoolerItKeepsNoStatementPrepared(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	s.setupCounters(20_000, 0, 1)
	bouncer := faults.NewPgBouncer(t, s.pg, faults.PoolMode("transaction"), faults.PoolSize(2))

	w := s.worker("w1", []string{"DATABASE_URL=" + bouncer.URL("postgres"), "LOG_LEVEL=debug"}, "--concurrency", "4")
	s.waitCompleted(countVersion)
	s.checkExactlyOnce(countVersion)
	st, _ := s.status(countVersion)
	require.Zero(t, st.BatchesFailed, "no batch may fail behind the pooler")
	stopWorkers(t, w)

	warned := false
	for _, l := range w.Stderr.Lines() {
		warned = warned || strings.Contains(l.Text, "statements are not kept prepared: connected on port")
	}
	require.True(t, warned, "the worker must say why it keeps no statement prepared:\n%s", w.Stderr.String())
	require.Positive(t, batchLines(w), "the worker behind the pooler did the batches")
}
