package batches_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

func parseDef(t *testing.T, version int64, content string) *batches.Definition {
	t.Helper()
	def, err := batches.ParseSQL(content)
	require.NoError(t, err)
	def.Version, def.Name, def.Mode, def.Source = version, "dry", batches.ModeAuto, "dry.sql"
	return def
}

// DryRunTx runs the step in the caller's transaction (its effect is visible
// there and gone after the rollback), cuts the batch from the first
// partition with keys, and counts the partitions with keys before the step
// can change which rows match where.
func TestDryRunTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := testdb.New(t)
	testdb.Exec(t, pool, `
CREATE TABLE users (handle text PRIMARY KEY, status text NOT NULL);
INSERT INTO users SELECT 'user-' || lpad(g::text, 5, '0'), CASE WHEN g % 2 = 0 THEN 'enabled' ELSE 'active' END
FROM generate_series(1, 4000) g;
ANALYZE users;`)
	def := parseDef(t, 7, `-- table: users
-- key: handle
-- batch: 50
-- partitions: 4
-- where: status = 'enabled'
-- down_where: status = 'active'
UPDATE users SET status = 'active' WHERE handle BETWEEN @first AND @last AND status = 'enabled';
-- down
UPDATE users SET status = 'enabled' WHERE handle BETWEEN @first AND @last AND status = 'active';
`)
	for _, dir := range []batches.Direction{batches.DirectionUp, batches.DirectionDown} {
		t.Run(string(dir), func(t *testing.T) {
			tx, err := pool.Begin(ctx)
			require.NoError(t, err)
			defer tx.Rollback(ctx) //nolint:errcheck
			d, err := batches.DryRunTx(ctx, tx, def, dir)
			require.NoError(t, err)
			require.True(t, d.Ran)
			require.Equal(t, dir, d.Direction)
			require.Equal(t, 0, d.Batch.Partition)
			require.Equal(t, int64(50), d.Batch.Rows)
			require.Equal(t, int64(50), d.RowsAffected, "every key of the batch matched")
			require.Equal(t, int64(7), d.Batch.Version)
			require.Greater(t, d.Duration, time.Duration(0))
			if dir == batches.DirectionUp {
				require.Equal(t, "status = 'enabled'", d.Options.Where)
				require.Equal(t, "user-00002", d.Batch.First, "the first enabled handle")
				require.Equal(t, "user-00100", d.Batch.Last)
			} else {
				require.Equal(t, "status = 'active'", d.Options.Where, "a revert cuts its batches with down_where")
				require.Equal(t, "user-00001", d.Batch.First)
				require.Equal(t, "user-00099", d.Batch.Last)
			}
			require.Len(t, d.Plan.Ranges, d.PartitionsWithRows, "every partition has keys")
			require.Greater(t, d.PartitionsWithRows, 1, "text keys are split at the histogram")

			// The batch changed rows inside tx...
			var changed int64
			want := "active"
			if dir == batches.DirectionDown {
				want = "enabled"
			}
			require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM users WHERE handle BETWEEN $1 AND $2 AND status = $3`,
				d.Batch.First, d.Batch.Last, want).Scan(&changed))
			require.Equal(t, int64(99), changed, "50 changed plus the 49 that already were")
			require.NoError(t, tx.Rollback(ctx))
			// ...and not after the rollback.
			var enabled int64
			require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM users WHERE status = 'enabled'`).Scan(&enabled))
			require.Equal(t, int64(2000), enabled)
		})
	}
}

// A statement that makes rows of other partitions stop matching where does
// not make those partitions count as empty: they are probed before the step.
func TestDryRunTx_PartitionsProbedBeforeTheStep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := testdb.New(t)
	testdb.Exec(t, pool, `
CREATE TABLE items (id int PRIMARY KEY, done bool NOT NULL DEFAULT false);
INSERT INTO items (id) SELECT g FROM generate_series(1, 40) g;
ANALYZE items;`)
	def := parseDef(t, 8, `-- table: items
-- key: id
-- batch: 10
-- partitions: 4
-- where: NOT done
UPDATE items SET done = true WHERE id >= @first::int AND @last::text IS NOT NULL;
`) // every row from the batch's first on: the other partitions no longer match
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	d, err := batches.DryRunTx(ctx, tx, def, batches.DirectionUp)
	require.NoError(t, err)
	require.Len(t, d.Plan.Ranges, 4)
	require.Equal(t, 4, d.PartitionsWithRows)
	require.Equal(t, "1", d.Batch.First)
	require.Equal(t, "10", d.Batch.Last)
	require.Equal(t, int64(40), d.RowsAffected)
	require.Equal(t, int64(4), d.BatchesEstimated())
}

func TestDryRunTx_Refusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := testdb.New(t)
	testdb.Exec(t, pool, `CREATE TABLE items (id int PRIMARY KEY);`)
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck

	goCalls := 0
	goDef := &batches.Definition{Version: 9, Name: "go_one", Source: batches.SourceGo,
		Options: batches.Options{Table: "items", Key: "id"}.WithDefaults(),
		Up: func(context.Context, pgx.Tx, batches.Batch) (int64, error) {
			goCalls++
			return 0, nil
		}}
	_, err = batches.DryRunTx(ctx, tx, goDef, batches.DirectionUp)
	require.ErrorIs(t, err, batches.ErrDryRunGo)
	require.Zero(t, goCalls, "a Go backfill's step must not run in a dry run")
	require.Contains(t, err.Error(), "9_go_one")

	def := parseDef(t, 10, "-- table: items\n-- key: id\nUPDATE items SET id = id WHERE id BETWEEN @first AND @last;\n")
	_, err = batches.DryRunTx(ctx, tx, def, batches.DirectionDown)
	require.ErrorContains(t, err, "no down step")

	// An empty table: nothing ran, nothing to estimate.
	d, err := batches.DryRunTx(ctx, tx, def, batches.DirectionUp)
	require.NoError(t, err)
	require.False(t, d.Ran)
	require.Zero(t, d.PartitionsWithRows)
	require.Zero(t, d.BatchesEstimated())
}

func TestDryRun_Estimates(t *testing.T) {
	t.Parallel()
	d := &batches.DryRun{
		Options:            batches.Options{BatchSize: 1000, Rate: 500},
		Plan:               &batches.Plan{RowsEstimated: 10500, Ranges: make([]batches.KeyRange, 8)},
		PartitionsWithRows: 8,
		Ran:                true,
		Batch:              batches.Batch{Rows: 1000},
		Duration:           20 * time.Millisecond,
	}
	require.Equal(t, int64(10500), d.RowsEstimated())
	require.Equal(t, int64(11), d.BatchesEstimated(), "10500 rows / 1000, rounded up")
	eta, ok := d.ETAAtRate()
	require.True(t, ok)
	require.Equal(t, 21*time.Second, eta)
	require.Equal(t, 220*time.Millisecond, d.ETAFromBatch(1))
	require.Equal(t, 55*time.Millisecond, d.ETAFromBatch(4))

	// At least one batch per partition with keys.
	d.Plan.RowsEstimated = 3000
	require.Equal(t, int64(8), d.BatchesEstimated())
	// A table never analysed is estimated at 0 rows: what was found counts.
	d.Plan.RowsEstimated = 0
	require.Equal(t, int64(1007), d.RowsEstimated(), "the batch's keys and one key in each other partition")
	d.Options.Rate = 0
	_, ok = d.ETAAtRate()
	require.False(t, ok)
}

// ETAs too long for a time.Duration saturate instead of wrapping around to
// a negative (or small) one.
func TestDryRun_ETAsSaturate(t *testing.T) {
	t.Parallel()
	d := &batches.DryRun{
		Options:            batches.Options{BatchSize: 1, Rate: 1},
		Plan:               &batches.Plan{RowsEstimated: 1 << 62, Ranges: make([]batches.KeyRange, 1)},
		PartitionsWithRows: 1,
		Ran:                true,
		Batch:              batches.Batch{Rows: 1},
		Duration:           time.Hour,
	}
	const longest = time.Duration(1<<63 - 1)
	eta, ok := d.ETAAtRate()
	require.True(t, ok)
	require.Equal(t, longest, eta)
	require.Equal(t, longest, d.ETAFromBatch(1))
	require.Equal(t, longest, d.ETAFromBatch(1024))
	// Just below the limit, the value is kept.
	d.Plan.RowsEstimated = 1000
	require.Equal(t, 1000*time.Hour, d.ETAFromBatch(1))
}
