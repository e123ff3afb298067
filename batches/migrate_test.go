package batches_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// Six migrators at once on an empty database (deploying nodes, say): each
// succeeds, every migration is applied and recorded once with its checksum,
// and migrating again is a no-op.
func TestMigrate_ConcurrentAndRepeatable(t *testing.T) {
	t.Parallel()
	_, pool := testdb.NewEmpty(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	results := make([]*batches.MigrateResult, 6)
	errs := make([]error, 6)
	for i := range errs {
		wg.Go(func() { results[i], errs[i] = batches.Migrate(ctx, pool, batches.MigrateOptions{}) })
	}
	wg.Wait()
	applied := 0
	for i, err := range errs {
		require.NoError(t, err)
		applied += len(results[i].Applied)
	}
	require.Equal(t, batches.SchemaVersion(), applied, "each migration applied by exactly one migrator")

	res, err := batches.Migrate(ctx, pool, batches.MigrateOptions{})
	require.NoError(t, err)
	require.Empty(t, res.Applied, "migrating an up-to-date database is a no-op")
	require.Zero(t, res.RiverSteps)

	recorded, err := batches.AppliedMigrations(ctx, pool)
	require.NoError(t, err)
	require.Len(t, recorded, batches.SchemaVersion())
	for i, m := range batches.Migrations() {
		require.Equal(t, m.Version, recorded[i].Version)
		require.Equal(t, m.Name, recorded[i].Name)
		require.Equal(t, m.Checksum, recorded[i].Checksum)
	}
	require.NoError(t, batches.CheckSchema(ctx, pool))

	// Every table and column of the engine says what it holds.
	rows, err := pool.Query(ctx, `SELECT c.relname || coalesce('.' || a.attname, '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = $1 AND c.relname LIKE 'backfill\_%' AND c.relkind = 'r'
	AND (obj_description(c.oid, 'pg_class') IS NULL OR col_description(c.oid, a.attnum) IS NULL)`, batches.SchemaDefault)
	require.NoError(t, err)
	uncommented, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Empty(t, uncommented, "tables and columns without COMMENT ON")
	var locks int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM backfill_migrate_lock`).Scan(&locks))
	require.Zero(t, locks, "the lock is given back")
}

// A lock left by a process that died is not held for ever: the next
// migrator says who holds it, waits for its lease to run out, and proceeds.
func TestMigrate_LockOfADeadProcessExpires(t *testing.T) {
	t.Parallel()
	_, pool := testdb.NewEmpty(t)
	ctx := context.Background()
	_, err := batches.Migrate(ctx, pool, batches.MigrateOptions{})
	require.NoError(t, err)
	testdb.Exec(t, pool, `INSERT INTO backfill_migrate_lock (id, holder, expires_at) VALUES (1, 'dead-host pid 4242', now() + interval '1 second')`)

	var told []string
	start := time.Now()
	_, err = batches.Migrate(ctx, pool, batches.MigrateOptions{OnWait: func(holder string, _ time.Time) { told = append(told, holder) }})
	require.NoError(t, err)
	waited := time.Since(start)
	require.Equal(t, []string{"dead-host pid 4242"}, told)
	require.GreaterOrEqual(t, waited, 500*time.Millisecond)
	require.Less(t, waited, 5*time.Second)

	// A live holder is waited for only as long as Wait allows, with a clear error.
	testdb.Exec(t, pool, `INSERT INTO backfill_migrate_lock (id, holder, expires_at) VALUES (1, 'busy-host pid 1', now() + interval '1 hour')`)
	_, err = batches.Migrate(ctx, pool, batches.MigrateOptions{Wait: 300 * time.Millisecond})
	require.ErrorContains(t, err, "busy-host pid 1")
}

// A database that the last release migrated (restored from its dump, with a
// completed run, everything in public) is upgraded in place: the engine's
// tables move into its own schema with their history (run-once holds), only
// the new migrations run, the release's version row gets its name and
// checksum, and River gets tables of its own there while the old ones in
// public, which an application may share, are left alone.
func TestMigrate_UpgradesTheLastReleasesSchema(t *testing.T) {
	t.Parallel()
	url, pool := testdb.NewEmpty(t)
	ctx := context.Background()
	dump, err := os.ReadFile("testdata/release_c4cf8e0_schema.sql")
	require.NoError(t, err)
	// The dump empties search_path for its session: restore on a connection
	// of its own.
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, string(dump))
	require.NoError(t, err)
	require.NoError(t, conn.Close(ctx))

	require.ErrorIs(t, batches.CheckSchema(ctx, pool), batches.ErrSchemaOutdated, "the release's schema is older than this binary")
	res, err := batches.Migrate(ctx, pool, batches.MigrateOptions{})
	require.NoError(t, err)
	require.Positive(t, res.RiverSteps, "River installed in the engine's schema")
	require.Len(t, res.Applied, batches.SchemaVersion()-1, "all but the release's one migration")
	var inPublic, riverInPublic, ours bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT to_regclass('public.backfill_runs') IS NOT NULL, to_regclass('public.river_job') IS NOT NULL,
	to_regclass('backfill.backfill_runs') IS NOT NULL`).Scan(&inPublic, &riverInPublic, &ours))
	require.False(t, inPublic, "the engine's tables moved out of public")
	require.True(t, riverInPublic, "River's tables in public are not the engine's to move")
	require.True(t, ours)
	require.Equal(t, 2, res.Applied[0].Version)
	require.NoError(t, batches.CheckSchema(ctx, pool))

	recorded, err := batches.AppliedMigrations(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, batches.Migrations()[0].Checksum, recorded[0].Checksum, "the release's row adopts the checksum")

	runs, err := batches.ListStatus(ctx, pool, nil)
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Equal(t, batches.StateCompleted, runs[0].State)
	require.Equal(t, int64(100000), runs[0].RowsDone)
}

// A binary refuses a database migrated by a newer binary, or one whose
// applied migration differs from its own, instead of misbehaving.
func TestCheckSchema_RefusesNewerAndChanged(t *testing.T) {
	t.Parallel()
	_, pool := testdb.New(t)
	ctx := context.Background()
	require.NoError(t, batches.CheckSchema(ctx, pool))

	testdb.Exec(t, pool, `INSERT INTO backfill_schema_version (version, name, checksum) VALUES (9999, 'from_the_future', 'ffff')`)
	err := batches.CheckSchema(ctx, pool)
	require.ErrorIs(t, err, batches.ErrSchemaTooNew)
	require.ErrorContains(t, err, "upgrade the binary")

	testdb.Exec(t, pool, `DELETE FROM backfill_schema_version WHERE version = 9999; UPDATE backfill_schema_version SET checksum = 'edited' WHERE version = 1`)
	require.ErrorIs(t, batches.CheckSchema(ctx, pool), batches.ErrMigrationChanged)
	_, err = batches.Migrate(ctx, pool, batches.MigrateOptions{})
	require.ErrorIs(t, err, batches.ErrMigrationChanged, "migrate does not paper over an edited migration")
}

// Errors from the server stay reachable through the engine's messages.
func TestErrors_ReachThePostgreSQLError(t *testing.T) {
	t.Parallel()
	_, pool := testdb.New(t)
	testdb.Exec(t, pool, `CREATE TABLE t (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0)`)
	def, err := batches.ParseSQL("-- table: t\n-- key: id\n-- where: no_such_column > 0\nUPDATE t SET n = 1 WHERE id BETWEEN @first AND @last;\n")
	require.NoError(t, err)
	def.Version, def.Name, def.Source = 1, "bad_where", "backfills/1_bad_where.sql"
	err = pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		_, _, err := batches.CreateRunTx(context.Background(), tx, batches.NewRunParams{Definition: def, Direction: batches.DirectionUp, RunNumber: 1, EnqueuedBy: "test"})
		return err
	})
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "42703", pgErr.Code)
	require.ErrorContains(t, err, "backfills/1_bad_where.sql")
	require.ErrorContains(t, err, "SQLSTATE 42703")
}

// A migration marked "-- backfill:no-transaction" runs outside a
// transaction, as CREATE INDEX CONCURRENTLY needs, on the engine's table
// named plainly in the file, and is recorded.
func TestMigrate_OutsideATransaction(t *testing.T) {
	t.Parallel()
	_, pool := testdb.New(t)
	ctx := context.Background()
	m := batches.Migration{Version: 999, Name: "concurrent_index", Checksum: "test", NoTransaction: true,
		SQL: "-- backfill:no-transaction\nCREATE INDEX CONCURRENTLY backfill_runs_test_idx ON backfill_runs (enqueued_at);\n"}
	require.NoError(t, batches.ApplyMigration(ctx, pool, m))
	var exists bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT to_regclass('backfill.backfill_runs_test_idx') IS NOT NULL`).Scan(&exists))
	require.True(t, exists, "the index is in the engine's schema")
	applied, err := batches.AppliedMigrations(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, 999, applied[len(applied)-1].Version)
}
