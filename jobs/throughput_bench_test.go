package jobs

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// BenchmarkThroughput compares the engine with a hand-written pgx keyset loop
// that commits a checkpoint row with every batch, on the same column rewrite,
// at the same batch size and one batch at a time, and prints the ratio
// measured in the same run. BENCH_ROWS sets the table size (default 1M),
// BENCH_BATCH the batch size (default 5000).
//
//	go test ./jobs -run XXX -bench Throughput -benchtime 1x
func BenchmarkThroughput(b *testing.B) {
	rows := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_ROWS")); err == nil && v > 0 {
		rows = v
	}
	batch := 5000
	if v, err := strconv.Atoi(os.Getenv("BENCH_BATCH")); err == nil && v > 0 {
		batch = v
	}
	for i := 0; i < b.N; i++ {
		bundle := benchSetup(b, rows)
		ctx := context.Background()

		loop := timeIt(func() { handWrittenLoop(b, bundle, "loop_table", batch) })
		bundle.writeFileB(b, "1_bench.sql", fmt.Sprintf("-- table: engine_table\n-- key: id\n-- batch: %d\n-- partitions: 1\n-- duty_cycle: off\n"+
			"UPDATE engine_table SET w = v * 2 WHERE id BETWEEN @first AND @last;\n", batch))
		reg, err := batches.NewRegistry(bundle.dir)
		require.NoError(b, err)
		enq, err := NewEnqueuer(bundle.pool, reg, "bench")
		require.NoError(b, err)
		_, err = enq.Pending(ctx)
		require.NoError(b, err)
		w, err := NewWorker(WorkerConfig{Pool: bundle.pool, Registry: reg, Concurrency: 1})
		require.NoError(b, err)
		require.NoError(b, w.Start(ctx))
		var st batches.RunStatus
		for {
			v := int64(1)
			list, err := batches.ListStatus(ctx, bundle.pool, &v)
			require.NoError(b, err)
			if st = list[0]; st.State == batches.StateCompleted {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		require.NoError(b, w.Stop(10*time.Second))
		engine := st.FinishedAt.Sub(*st.StartedAt)

		loopRate, engineRate := float64(rows)/loop.Seconds(), float64(rows)/engine.Seconds()
		b.ReportMetric(loopRate, "loop_rows/s")
		b.ReportMetric(engineRate, "engine_rows/s")
		b.ReportMetric(engineRate/loopRate, "engine/loop")
		fmt.Printf("rows %d, batch %d, one batch at a time: hand-written loop %.0f rows/s (%s), engine %.0f rows/s (%s), engine/loop %.2f\n",
			rows, batch, loopRate, loop.Round(time.Millisecond), engineRate, engine.Round(time.Millisecond), engineRate/loopRate)
	}
}

type benchBundle struct {
	testBundle
}

func (b *benchBundle) writeFileB(tb testing.TB, name, content string) {
	require.NoError(tb, os.WriteFile(b.dir+"/"+name, []byte(content), 0o644))
}

func benchSetup(b *testing.B, rows int) *benchBundle {
	url, pool := testdb.New(b)
	for _, table := range []string{"loop_table", "engine_table"} {
		testdb.Exec(b, pool, fmt.Sprintf(`CREATE TABLE %[1]s (id bigint PRIMARY KEY, v int NOT NULL, w int);
INSERT INTO %[1]s (id, v) SELECT g, g %% 1000 FROM generate_series(1, %[2]d) g;`, table, rows))
		testdb.Exec(b, pool, "VACUUM ANALYZE "+table)
	}
	testdb.Exec(b, pool, `CREATE TABLE loop_checkpoint (id int PRIMARY KEY, cursor bigint, rows bigint)`)
	return &benchBundle{testBundle{url: url, pool: pool, dir: b.TempDir()}}
}

// handWrittenLoop is the baseline: per transaction, find the batch's last
// key, update the batch, write the checkpoint row, commit.
func handWrittenLoop(b *testing.B, bundle *benchBundle, table string, batch int) {
	ctx := context.Background()
	conn, err := bundle.pool.Acquire(ctx)
	require.NoError(b, err)
	defer conn.Release()
	testdb.Exec(b, bundle.pool, `INSERT INTO loop_checkpoint VALUES (1, 0, 0)`)
	cursor := int64(0)
	for {
		done := false
		require.NoError(b, pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			var last *int64
			if err := tx.QueryRow(ctx, `SELECT max(id) FROM (SELECT id FROM `+table+` WHERE id > $1 ORDER BY id LIMIT $2) s`, cursor, batch).Scan(&last); err != nil {
				return err
			}
			if last == nil {
				done = true
				return nil
			}
			tag, err := tx.Exec(ctx, `UPDATE `+table+` SET w = v * 2 WHERE id > $1 AND id <= $2`, cursor, *last)
			if err != nil {
				return err
			}
			cursor = *last
			_, err = tx.Exec(ctx, `UPDATE loop_checkpoint SET cursor = $1, rows = rows + $2 WHERE id = 1`, cursor, tag.RowsAffected())
			return err
		}))
		if done {
			return
		}
	}
}

func timeIt(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}
