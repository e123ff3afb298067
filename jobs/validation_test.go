package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

func TestPending_RejectsBrokenStatementsBeforeRecordingAnything(t *testing.T) {
	t.Parallel()
	for name, file := range map[string]string{
		"unknown column": "-- table: items\n-- key: id\nUPDATE items SET nope = 1 WHERE id BETWEEN @first AND @last;\n",
		"syntax":         "-- table: items\n-- key: id\nUPDATE items SETT n = 1 WHERE id BETWEEN @first AND @last;\n",
		"bad where":      "-- table: items\n-- key: id\n-- where: nope IS NULL\nUPDATE items SET n = 1 WHERE id BETWEEN @first AND @last;\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			testdb.Exec(t, b.pool, `CREATE TABLE items (id bigint PRIMARY KEY, n int)`)
			// A valid backfill next to the broken one: pending is all or nothing.
			b.writeFile(t, "1_fine.sql", "-- table: items\n-- key: id\nUPDATE items SET n = 2 WHERE id BETWEEN @first AND @last;\n")
			b.writeFile(t, "2_broken.sql", file)
			_, err := b.load(t).Pending(context.Background())
			require.Error(t, err)
			if name != "bad where" {
				require.Contains(t, err.Error(), "2_broken.sql")
			}
			require.Contains(t, err.Error(), "SQLSTATE")
			require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM backfill_runs`))
			require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM river_job`))
		})
	}
}

func TestRevert_UsesDownWhereNotWhere(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE users (id bigint PRIMARY KEY, status text NOT NULL);
INSERT INTO users SELECT g, CASE WHEN g % 4 = 0 THEN 'disabled' ELSE 'enabled' END FROM generate_series(1, 2000) g;
ANALYZE users;`)
	b.writeFile(t, "8_activate.sql", `-- table: users
-- key: id
-- where: status = 'enabled'
-- down_where: status = 'active'
-- batch: 100
UPDATE users SET status = 'active' WHERE id BETWEEN @first AND @last AND status = 'enabled';
-- down
UPDATE users SET status = 'enabled' WHERE id BETWEEN @first AND @last AND status = 'active';
`)
	enq := b.load(t)
	_, err := enq.Pending(context.Background())
	require.NoError(t, err)
	b.startWorker(t, WorkerConfig{Concurrency: 2})
	st := b.waitState(t, 8, batches.StateCompleted, 30*time.Second)
	require.Equal(t, int64(1500), st.RowsDone, "only rows matching where are cut into batches")
	// 15 full batches' worth, plus at most one partial batch per partition.
	require.GreaterOrEqual(t, st.BatchesDone, int64(15))
	require.LessOrEqual(t, st.BatchesDone, 15+st.Partitions)

	_, err = enq.Revert(context.Background(), 8)
	require.NoError(t, err)
	st = b.waitState(t, 8, batches.StateCompleted, 30*time.Second)
	require.Equal(t, batches.DirectionDown, st.Direction)
	require.Equal(t, int64(1500), st.RowsAffected)
	require.Equal(t, int64(1500), queryInt(t, b.pool, `SELECT count(*) FROM users WHERE status = 'enabled'`))
	require.Equal(t, int64(500), queryInt(t, b.pool, `SELECT count(*) FROM users WHERE status = 'disabled'`))
}
