package jobs

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/demo"
)

// The seed backfills shipped in backfills/, run by the engine on the demo's
// data set (smaller than the demo's).
const (
	usersStatusActive = 20260301120000
	ordersPriceEUR    = 20260301120100
	flagsToRedis      = 20260301120200
)

var exampleSizes = demo.Sizes{Users: 5000, Orders: 40000, Flags: 3}

// seedDir is the repository's real backfill directory.
var seedDir = filepath.Join("..", "backfills")

// setupExamples builds the demo tables in the test database's public schema,
// loads the real backfills/ and the Go backfills as the binaries do, and
// enqueues the pending ones, checking that exactly the two automatic SQL
// backfills were enqueued.
func setupExamples(t *testing.T) *testBundle {
	t.Helper()
	ctx := context.Background()
	b := setup(t)
	b.dir = seedDir
	require.NoError(t, demo.Setup(ctx, b.pool, "public", exampleSizes))
	enq := b.load(t, GoBackfills(nil)...)

	res, err := enq.Pending(ctx)
	require.NoError(t, err)
	require.Empty(t, res.Drifted)
	require.Zero(t, res.AlreadyEnqueued)
	var versions []int64
	for _, r := range res.Enqueued {
		versions = append(versions, r.Version)
		require.Equal(t, batches.DirectionUp, r.Direction)
		require.Equal(t, batches.ModeAuto, r.Mode)
		require.Equal(t, 1, r.RunNumber)
	}
	require.Equal(t, []int64{usersStatusActive, ordersPriceEUR}, versions)
	// The manual Go backfill waits for "enqueue run".
	v := int64(flagsToRedis)
	runs, err := batches.ListStatus(ctx, b.pool, &v)
	require.NoError(t, err)
	require.Empty(t, runs)
	return b
}

// statuses returns every user's status by id.
func statuses(t *testing.T, b *testBundle) map[int64]string {
	t.Helper()
	rows, err := b.pool.Query(context.Background(), `SELECT id, status FROM users`)
	require.NoError(t, err)
	out := map[int64]string{}
	for rows.Next() {
		var (
			id     int64
			status string
		)
		require.NoError(t, rows.Scan(&id, &status))
		out[id] = status
	}
	require.NoError(t, rows.Err())
	return out
}

func TestExample_SeedFiles(t *testing.T) {
	t.Parallel()
	reg, err := NewRegistry(seedDir, nil)
	require.NoError(t, err)
	var versions []int64
	for _, d := range reg.All() {
		versions = append(versions, d.Version)
	}
	require.Equal(t, []int64{usersStatusActive, ordersPriceEUR, flagsToRedis}, versions)

	users, err := reg.Get(usersStatusActive)
	require.NoError(t, err)
	require.Equal(t, "users_status_active", users.Name)
	require.Equal(t, batches.ModeAuto, users.Mode)
	require.Equal(t, "users", users.Options.Table)
	require.Equal(t, "id", users.Options.Key)
	// Batches are cut only from the users each direction must change.
	require.Equal(t, "status = 'enabled'", users.Options.Where)
	require.Equal(t, "status = 'active'", users.Options.DownWhere)
	require.NotNil(t, users.Down)

	orders, err := reg.Get(ordersPriceEUR)
	require.NoError(t, err)
	require.Equal(t, "orders_price_eur", orders.Name)
	require.Equal(t, batches.ModeAuto, orders.Mode)
	require.Equal(t, "orders", orders.Options.Table)
	require.Equal(t, 5000, orders.Options.BatchSize)
	require.Nil(t, orders.Down)

	flags, err := reg.Get(flagsToRedis)
	require.NoError(t, err)
	require.Equal(t, batches.ModeManual, flags.Mode)
	require.True(t, flags.IsGo())
}

// Example 1: users.status 'enabled' -> 'active', and its revert.
func TestExample1_UsersStatusActive_AndRevert(t *testing.T) {
	t.Parallel()
	b := setupExamples(t)
	before := statuses(t, b)
	require.Len(t, before, exampleSizes.Users)

	b.startWorker(t, WorkerConfig{Concurrency: 4})
	st := b.waitState(t, usersStatusActive, batches.StateCompleted, time.Minute)
	require.Equal(t, int64(exampleSizes.Users*9/10), st.RowsDone) // only 'enabled' users are cut into batches
	require.Equal(t, int64(exampleSizes.Users*9/10), st.RowsAffected)
	require.Zero(t, st.BatchesFailed)

	after := statuses(t, b)
	require.Len(t, after, len(before))
	for id, was := range before {
		switch was {
		case "enabled":
			require.Equal(t, "active", after[id], "user %d", id)
		default:
			require.Equal(t, was, after[id], "user %d must be untouched", id)
		}
	}
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM users WHERE status = 'enabled'`))
	require.Equal(t, int64(exampleSizes.Users/10), queryInt(t, b.pool, `SELECT count(*) FROM users WHERE status = 'disabled'`))

	run, err := b.enq.Revert(context.Background(), usersStatusActive)
	require.NoError(t, err)
	require.Equal(t, batches.DirectionDown, run.Direction)
	require.Equal(t, 2, run.RunNumber)
	st = b.waitState(t, usersStatusActive, batches.StateCompleted, time.Minute)
	require.Equal(t, batches.DirectionDown, st.Direction)
	require.Equal(t, int64(exampleSizes.Users*9/10), st.RowsDone)
	require.Equal(t, int64(exampleSizes.Users*9/10), st.RowsAffected)

	// Every user is back exactly as before.
	require.Equal(t, before, statuses(t, b))
}

// Example 2: orders.price_eur_cents filled from price_cents.
func TestExample2_OrdersPriceEUR(t *testing.T) {
	t.Parallel()
	b := setupExamples(t)
	_, err := demo.Verify(context.Background(), b.pool, demo.VerifyOptions{Schema: "public"})
	require.ErrorIs(t, err, demo.ErrNotVerified, "nothing has run yet")

	b.startWorker(t, WorkerConfig{Concurrency: 4})
	st := b.waitState(t, ordersPriceEUR, batches.StateCompleted, time.Minute)

	require.Equal(t, int64(exampleSizes.Orders), st.RowsDone)
	require.Equal(t, int64(exampleSizes.Orders), st.RowsAffected)
	require.Equal(t, int64(exampleSizes.Orders/5000), st.BatchesDone) // batch: 5000, no empty batches
	require.Zero(t, st.BatchesFailed)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM orders WHERE price_eur_cents IS DISTINCT FROM price_cents * 92 / 100`))
	require.Equal(t, int64(exampleSizes.Orders), queryInt(t, b.pool, `SELECT count(*) FROM orders`))

	// With both runs done, the demo's own check passes (Redis not checked).
	b.waitState(t, usersStatusActive, batches.StateCompleted, time.Minute)
	_, err = demo.Verify(context.Background(), b.pool, demo.VerifyOptions{Schema: "public"})
	require.NoError(t, err)
}
