package batches_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// roundTrips counts what a connection sends: each standalone statement and
// each batch (pipeline) is one round trip.
type roundTrips struct {
	mu         sync.Mutex
	statements []string
	batches    [][]string
}

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.statements = append(r.statements, d.SQL)
	return ctx
}

func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, nil)
	return ctx
}

func (r *roundTrips) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches[len(r.batches)-1] = append(r.batches[len(r.batches)-1], d.SQL)
}

func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func (r *roundTrips) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.statements, r.batches = nil, nil
}

// oneBatchRun creates table (keys 1 to rows, a counter n) and a run of one
// partition over it in batches of batch rows that adds 1 to n, owned by
// job 7.
func oneBatchRun(t *testing.T, pool *pgxpool.Pool, table string, rows, batch int) *batches.Run {
	t.Helper()
	ctx := context.Background()
	name := pgx.Identifier{table}.Sanitize()
	testdb.Exec(t, pool, `CREATE TABLE `+name+` (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0)`)
	testdb.Exec(t, pool, `INSERT INTO `+name+` (id) SELECT g FROM generate_series(1, $1::int) g`, rows)
	testdb.Exec(t, pool, `ANALYZE `+name)
	opts := batches.Options{Table: table, Key: "id", BatchSize: batch, Partitions: 1}.WithDefaults()
	statement := `UPDATE ` + name + ` SET n = n + 1 WHERE id BETWEEN @first AND @last`
	def := &batches.Definition{Version: 1, Name: table, Mode: batches.ModeManual, Options: opts, Source: "test", UpSQL: statement, Checksum: "test"}
	var run *batches.Run
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		if run, _, err = batches.CreateRunTx(ctx, tx, batches.NewRunParams{Definition: def, Direction: batches.DirectionUp, RunNumber: 1, EnqueuedBy: "test"}); err != nil {
			return err
		}
		return batches.AssignJobTx(ctx, tx, run.ID, 0, 0, 7)
	}))
	return run
}

// A batch that goes on with its partition costs three round trips: BEGIN
// with the timeouts, the partition's lock and the cut; the statement; the
// checkpoint with the COMMIT. The transaction is a real one: until its
// COMMIT nothing of the batch is seen from elsewhere, and a rollback keeps
// neither the rows nor the checkpoint.
func TestProcessBatch_BeginsWithTheFirstStatementsInThreeRoundTrips(t *testing.T) {
	t.Parallel()
	url, pool := testdb.New(t)
	ctx := context.Background()
	run := oneBatchRun(t, pool, "rt", 3500, 1000)

	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	trips := &roundTrips{}
	cfg.Tracer = trips
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer conn.Close(ctx)
	cursor := func() string {
		var c *string
		require.NoError(t, pool.QueryRow(ctx, `SELECT cursor_key FROM backfill.backfill_partitions WHERE run_id = $1`, run.ID).Scan(&c))
		if c == nil {
			return ""
		}
		return *c
	}
	p := batches.BatchParams{Run: run, Partition: 0, JobID: 7, Step: run.Step()}

	// The first batch, left open: its rows and checkpoint are seen from
	// nowhere else until it commits, and rolled back they are gone.
	tx, res, err := batches.ProcessBatch(ctx, conn, p)
	require.NoError(t, err)
	require.Equal(t, int64(1000), res.Batch.Rows)
	require.False(t, res.Committed)
	require.Equal(t, byte('T'), conn.PgConn().TxStatus(), "inside the transaction")
	require.Equal(t, "", cursor())
	require.NoError(t, tx.Rollback(ctx))
	require.Equal(t, byte('I'), conn.PgConn().TxStatus())
	require.Zero(t, planQueryInt(t, pool, `SELECT count(*) FROM rt WHERE n > 0`), "rolled back")
	require.Equal(t, "", cursor())

	// Again, committed by the caller.
	tx, res, err = batches.ProcessBatch(ctx, conn, p)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, "1000", cursor())
	require.Equal(t, int64(1000), planQueryInt(t, pool, `SELECT count(*) FROM rt WHERE n = 1`))

	// Warm (its statements prepared on conn), a batch that goes on and
	// commits with its checkpoint: three round trips, BEGIN in the first.
	p.After, p.Commit = &res.Next, true
	trips.reset()
	_, res, err = batches.ProcessBatch(ctx, conn, p)
	require.NoError(t, err)
	require.True(t, res.Committed)
	require.Equal(t, byte('I'), conn.PgConn().TxStatus(), "committed")
	require.Equal(t, "2000", cursor())
	t.Logf("statements %q, batches %q", trips.statements, trips.batches)
	require.Len(t, trips.batches, 2, "the lock with the cut, the checkpoint with the COMMIT")
	require.Equal(t, "begin", trips.batches[0][0])
	require.Len(t, trips.statements, 1, "the batch's statement alone")
	require.Equal(t, run.UpSQL, trips.statements[0])
	require.Equal(t, "COMMIT", trips.batches[1][len(trips.batches[1])-1])

	// A job that no longer owns the partition gets ErrNotOwner and a
	// transaction to roll back; the connection is idle again after it.
	stale := p
	stale.JobID, stale.After = 8, &res.Next
	tx, _, err = batches.ProcessBatch(ctx, conn, stale)
	require.ErrorIs(t, err, batches.ErrNotOwner)
	require.NoError(t, tx.Rollback(ctx))
	require.Equal(t, byte('I'), conn.PgConn().TxStatus())
	require.Equal(t, "2000", cursor())
}

// A step that panics (a Go backfill's) leaves no transaction open on the
// connection: ProcessBatch rolls back the one it began, then panics on.
func TestProcessBatch_APanickingStepRollsItsTransactionBack(t *testing.T) {
	t.Parallel()
	url, pool := testdb.New(t)
	ctx := context.Background()
	run := oneBatchRun(t, pool, "rtp", 100, 10)
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	step := func(ctx context.Context, tx pgx.Tx, b batches.Batch) (int64, error) {
		if _, err := tx.Exec(ctx, `UPDATE rtp SET n = n + 1 WHERE id BETWEEN $1 AND $2`, b.First, b.Last); err != nil {
			return 0, err
		}
		panic("a step's bug")
	}
	require.PanicsWithValue(t, "a step's bug", func() {
		_, _, _ = batches.ProcessBatch(ctx, conn, batches.BatchParams{Run: run, Partition: 0, JobID: 7, Step: step})
	})
	require.Equal(t, byte('I'), conn.PgConn().TxStatus(), "rolled back")
	require.Zero(t, planQueryInt(t, pool, `SELECT count(*) FROM rtp WHERE n > 0`))
	var free []int32
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT partition FROM backfill.backfill_partitions WHERE run_id = $1 FOR UPDATE SKIP LOCKED`, run.ID)
		var err error
		free, err = pgx.CollectRows(rows, pgx.RowTo[int32])
		return err
	}))
	require.Equal(t, []int32{0}, free, "the partition row is not locked")
}
