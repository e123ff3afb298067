package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/internal/testdb"
)

// A deploy's "pending" must not hang behind a lock held by someone else (an
// ALTER TABLE in another session, say): it gives up after --lock-timeout with
// a message that says so, records nothing, and succeeds once the lock is gone.
func TestPending_GivesUpBehindALockAndRecordsNothing(t *testing.T) {
	t.Parallel()
	url, pool := testdb.New(t)
	testdb.Exec(t, pool, `CREATE TABLE orders (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO orders (id) SELECT g FROM generate_series(1, 100) g; ANALYZE orders;`)
	dir := t.TempDir()
	writeBackfill(t, dir, "1_orders.sql", "-- table: orders\n-- key: id\nUPDATE orders SET n = n + 1 WHERE id BETWEEN @first AND @last;\n")
	env := map[string]string{"DATABASE_URL": url, "BACKFILL_DIR": dir}

	ctx := context.Background()
	holder, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer holder.Rollback(ctx)
	_, err = holder.Exec(ctx, `LOCK TABLE orders IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)

	start := time.Now()
	_, _, err = runCLI(t, env, "pending", "--lock-timeout", "300ms")
	took := time.Since(start)
	require.Error(t, err)
	require.Contains(t, err.Error(), "55P03")
	require.Contains(t, err.Error(), "--lock-timeout 300ms")
	require.Contains(t, err.Error(), "recorded nothing")
	require.Less(t, took, 5*time.Second)
	var runs int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM backfill_runs`).Scan(&runs))
	require.Zero(t, runs)

	require.NoError(t, holder.Rollback(ctx))
	_, _, err = runCLI(t, env, "pending", "--lock-timeout", "300ms")
	require.NoError(t, err)
}
