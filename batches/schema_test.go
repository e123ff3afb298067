package batches_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

func TestMigrate_ConcurrentAndRepeatable(t *testing.T) {
	t.Parallel()
	_, pool := testdb.NewEmpty(t)
	ctx := context.Background()

	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = batches.Migrate(ctx, pool)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	res, err := batches.Migrate(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, batches.MigrateResult{}, *res, "migrating an up-to-date database is a no-op")

	var steps, runs int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM backfill_schema_version`).Scan(&steps))
	require.Equal(t, 2, steps, "each of the two schema steps is recorded once")
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM backfill_status`).Scan(&runs))
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM river_job`).Scan(&runs))
}
