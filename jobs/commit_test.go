package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// A batch commits with its checkpoint in one round trip. A batch whose own
// work fails only at COMMIT (a deferred constraint) is a failed batch like
// any other: nothing of it is kept or counted, its keys and SQLSTATE are
// recorded, and retry resumes it once the data is fixed.
func TestCommit_ADeferredConstraintFailsTheBatchAtCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testdb.Exec(t, b.pool, `
CREATE TABLE owners (id bigint PRIMARY KEY);
INSERT INTO owners SELECT g FROM generate_series(1, 3000) g;
CREATE TABLE pets (id bigint PRIMARY KEY, owner_id bigint REFERENCES owners (id) DEFERRABLE INITIALLY DEFERRED, n int NOT NULL DEFAULT 0);
INSERT INTO pets (id, owner_id) SELECT g, g FROM generate_series(1, 3000) g;
ANALYZE pets;`)
	// Every pet moves to the owner 1000 further on; owners above 3000 do not
	// exist yet, which only the COMMIT finds.
	b.writeFile(t, "4_move.sql", `-- table: pets
-- key: id
-- batch: 100
-- partitions: 1
-- attempts: 2
-- duty_cycle: off
UPDATE pets SET owner_id = CASE WHEN id < 2000 THEN id ELSE id + 1000 END, n = n + 1 WHERE id BETWEEN @first AND @last;
`)
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)
	b.startWorker(t, WorkerConfig{Concurrency: 1})

	st := b.waitState(t, 4, batches.StateFailed, 60*time.Second)
	require.Equal(t, int64(2000), st.RowsDone, "the batches before the failing one")
	require.Contains(t, *st.LastError, "batch 2001..2100 of partition 0: SQLSTATE 23503")
	require.Equal(t, int64(2000), queryInt(t, b.pool, `SELECT count(*) FROM pets WHERE n = 1`), "nothing of the failed batch was kept")
	require.Equal(t, int64(0), queryInt(t, b.pool, `SELECT count(*) FROM pets WHERE n > 1`))
	require.Equal(t, int64(2), queryInt(t, b.pool, `SELECT count(*) FROM backfill_events WHERE action = 'batch_failed' AND detail->>'sqlstate' = '23503' AND detail->>'first_key' = '2001'`))

	testdb.Exec(t, b.pool, `INSERT INTO owners SELECT g FROM generate_series(3001, 4000) g`)
	_, _, err = b.enq.Retry(context.Background(), 4)
	require.NoError(t, err)
	st = b.waitState(t, 4, batches.StateCompleted, 60*time.Second)
	require.Equal(t, int64(3000), st.RowsDone)
	require.Equal(t, int64(3000), queryInt(t, b.pool, `SELECT count(*) FROM pets WHERE n = 1`), "every row exactly once")
}
