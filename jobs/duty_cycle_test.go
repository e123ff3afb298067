package jobs

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// The default duty cycle, 20%, keeps the run's batches busy a fifth of the
// time, summed over its partitions working at once: batches that each wait
// 20 ms run about ten times a second. Status says the duty cycle sets the
// pace, with the share it measured.
func TestDutyCycle_KeepsBatchesBusyAShareOfTheTime(t *testing.T) {
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE dutiful (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO dutiful (id) SELECT g FROM generate_series(1, 600) g; ANALYZE dutiful;`)
	b.writeFile(t, "8_dutiful.sql", `-- table: dutiful
-- key: id
-- batch: 10
-- partitions: 4
WITH pause AS (SELECT pg_sleep(0.02))
UPDATE dutiful SET n = n + 1 FROM pause WHERE id BETWEEN @first AND @last;
`)
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)
	log := &batchLog{}
	b.startWorker(t, WorkerConfig{Concurrency: 4, Observer: log})
	var held batches.RunStatus
	// After a few seconds: the first second holds every partition's first
	// batch, which pays with the partition's second.
	require.Eventually(t, func() bool {
		held = latestStatus(t, b, 8)
		return held.StartedAt != nil && time.Since(*held.StartedAt) > 3*time.Second &&
			strings.Contains(held.HeldBack, "duty cycle (busy ")
	}, 20*time.Second, 100*time.Millisecond, "status never said the duty cycle holds the run")
	t.Logf("held back: %s", held.HeldBack)
	require.Contains(t, held.HeldBack, "limit 20%)")
	require.InDelta(t, 0.20, held.BusyShare, 0.06)
	st := b.waitState(t, 8, batches.StateCompleted, 60*time.Second)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM dutiful WHERE n <> 1`))

	log.mu.Lock()
	defer log.mu.Unlock()
	var busy time.Duration
	for _, bt := range log.batches {
		busy += bt.took
	}
	elapsed := st.FinishedAt.Sub(*st.StartedAt)
	share := busy.Seconds() / elapsed.Seconds()
	t.Logf("%d batches busy %s in %s: %.2f of the time", len(log.batches), busy.Round(time.Millisecond), elapsed.Round(time.Millisecond), share)
	require.InDelta(t, 0.20, share, 0.05)
	require.Equal(t, 0.2, st.DutyCycle)
}
