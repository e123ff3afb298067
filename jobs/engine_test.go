package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

func TestEngine_FillsEveryRowOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testdb.Exec(t, b.pool, `
CREATE TABLE orders (id bigint PRIMARY KEY, price_cents int NOT NULL, price_eur_cents int, touched int NOT NULL DEFAULT 0);
INSERT INTO orders (id, price_cents) SELECT g, g % 1000 FROM generate_series(1, 20000) g;
ANALYZE orders;`)
	b.writeFile(t, "10_fill_eur.sql", `-- table: orders
-- key: id
-- batch: 500
-- partitions: 4
UPDATE orders SET price_eur_cents = price_cents * 92 / 100, touched = touched + 1
WHERE id BETWEEN @first AND @last;
`)
	enq := b.load(t)
	res, err := enq.Pending(context.Background())
	require.NoError(t, err)
	require.Len(t, res.Enqueued, 1)

	b.startWorker(t, WorkerConfig{Concurrency: 4})
	st := b.waitState(t, 10, batches.StateCompleted, 30*time.Second)

	require.Equal(t, int64(20000), st.RowsDone)
	require.Equal(t, int64(40), st.BatchesDone) // 20,000 rows / 500, no empty batches
	require.Equal(t, int64(4), st.Partitions)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM orders WHERE touched <> 1 OR price_eur_cents IS NULL`))
}
