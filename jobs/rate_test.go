package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// measuredRate runs a rate-limited backfill to completion and returns the
// rows per second between the run's start and finish as the database
// recorded them.
func measuredRate(t *testing.T, rows int, header string, cfg WorkerConfig) float64 {
	t.Helper()
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE paced (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO paced (id) SELECT g FROM generate_series(1, `+itoa(rows)+`) g;
ANALYZE paced;`)
	b.writeFile(t, "4_paced.sql", "-- table: paced\n-- key: id\n"+header+"UPDATE paced SET n = n + 1 WHERE id BETWEEN @first AND @last;\n")
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)
	b.startWorker(t, cfg)
	st := b.waitState(t, 4, batches.StateCompleted, 60*time.Second)
	require.Equal(t, int64(rows), st.RowsDone)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM paced WHERE n <> 1`))
	took := st.FinishedAt.Sub(*st.StartedAt)
	rate := float64(rows) / took.Seconds()
	t.Logf("%d rows in %s: %.0f rows/s", rows, took.Round(time.Millisecond), rate)
	return rate
}

// The rate tests measure time, so they do not run in parallel with the
// package's other tests.

func TestRate_HoldsWithinTenPercentAcrossPartitions(t *testing.T) {
	// 4 partitions worked at once share the run's limit.
	rate := measuredRate(t, 8000, "-- batch: 100\n-- partitions: 4\n-- rate: 2000\n-- duty_cycle: off\n", WorkerConfig{Concurrency: 4})
	require.InDelta(t, 2000, rate, 200)
}

func TestRate_HoldsWhenWaitsOutlastAJob(t *testing.T) {
	// A 2s job timeout gives half-second slices, shorter than the waits of
	// 4 partitions at 400 rows/s: jobs hand over rows already paid for.
	rate := measuredRate(t, 2400, "-- batch: 100\n-- partitions: 4\n-- rate: 400\n-- duty_cycle: off\n", WorkerConfig{Concurrency: 4, JobTimeout: 2 * time.Second, RescueAfter: 10 * time.Second})
	require.InDelta(t, 400, rate, 40)
}
