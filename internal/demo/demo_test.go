package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

func count(t *testing.T, pool *pgxpool.Pool, sql string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, pool.QueryRow(context.Background(), sql).Scan(&n))
	return n
}

// backfill does what the seed SQL backfills do, in one statement each.
func backfill(t *testing.T, pool *pgxpool.Pool, schema string) {
	t.Helper()
	testdb.Exec(t, pool, `SET search_path TO `+schema+`;
UPDATE users SET status = 'active' WHERE status = 'enabled';
UPDATE orders SET price_eur_cents = price_cents * 92 / 100 WHERE price_eur_cents IS NULL;
RESET search_path;`)
}

func TestSetup_CreatesTheDataSet(t *testing.T) {
	t.Parallel()
	_, pool := testdb.New(t)
	ctx := context.Background()
	require.NoError(t, Setup(ctx, pool, "public", Sizes{Users: 1000, Orders: 5000, Flags: 10}))

	require.Equal(t, int64(1000), count(t, pool, `SELECT count(*) FROM users`))
	require.Equal(t, int64(900), count(t, pool, `SELECT count(*) FROM users WHERE status = 'enabled'`))
	require.Equal(t, int64(100), count(t, pool, `SELECT count(*) FROM users WHERE status = 'disabled'`))
	require.Equal(t, int64(5000), count(t, pool, `SELECT count(*) FROM orders WHERE price_eur_cents IS NULL AND price_cents BETWEEN 100 AND 99999`))
	require.Zero(t, count(t, pool, `SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = o.user_id)`))
	require.Equal(t, int64(10), count(t, pool, `SELECT count(*) FROM feature_flags`))
	// The seed flags come first, with the article's values.
	rows, err := pool.Query(ctx, `SELECT name, enabled FROM feature_flags WHERE id <= 3 ORDER BY id`)
	require.NoError(t, err)
	var seed []Flag
	for rows.Next() {
		var f Flag
		require.NoError(t, rows.Scan(&f.Name, &f.Enabled))
		seed = append(seed, f)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, SeedFlags, seed)
	// Analysed: the planner knows the row counts, so runs are planned right.
	require.Equal(t, int64(5000), count(t, pool, `SELECT reltuples::bigint FROM pg_class WHERE oid = 'public.orders'::regclass`))

	// Setup again replaces the tables (and leaves the version table alone).
	require.NoError(t, Setup(ctx, pool, "public", Sizes{Users: 10, Orders: 0, Flags: 3}))
	require.Equal(t, int64(10), count(t, pool, `SELECT count(*) FROM users`))
	require.Zero(t, count(t, pool, `SELECT count(*) FROM orders`))
	require.Equal(t, int64(1), count(t, pool, `SELECT count(*) FROM pg_class WHERE relname = 'backfill_runs'`))
}

func TestSetup_RefusesBadSizes(t *testing.T) {
	t.Parallel()
	for _, s := range []Sizes{{Users: -1, Flags: 3}, {Orders: -1, Flags: 3}, {Orders: 5, Flags: 3}, {Users: 5, Flags: 2}} {
		require.Error(t, s.Validate(), "%+v", s)
		require.Error(t, Setup(context.Background(), nil, "public", s), "%+v", s) // refused before touching the database
	}
	require.NoError(t, DefaultSizes().Validate())
}

func TestResetSchema_DropsEverythingInIt(t *testing.T) {
	t.Parallel()
	_, pool := testdb.New(t)
	ctx := context.Background()
	require.NoError(t, ResetSchema(ctx, pool, Schema))
	require.NoError(t, Setup(ctx, pool, Schema, Sizes{Users: 10, Orders: 10, Flags: 3}))
	testdb.Exec(t, pool, `CREATE TABLE backfill_demo.river_job (id bigint)`) // as a previous demo leaves it
	require.Equal(t, int64(4), count(t, pool, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'backfill_demo' AND c.relkind = 'r'`))

	require.NoError(t, ResetSchema(ctx, pool, Schema))
	require.Equal(t, int64(1), count(t, pool, `SELECT count(*) FROM pg_namespace WHERE nspname = 'backfill_demo'`))
	require.Zero(t, count(t, pool, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'backfill_demo'`))
	// The engine's schema, with River's tables and the version table, is left alone.
	require.Equal(t, int64(1), count(t, pool, `SELECT count(*) FROM pg_class WHERE relname = 'backfill_runs' AND relnamespace = 'backfill'::regnamespace`))

	require.Error(t, ResetSchema(ctx, pool, "public"))
	require.Error(t, ResetSchema(ctx, pool, ""))
}

func TestVerify_FailsBeforeTheBackfillsAndPassesAfter(t *testing.T) {
	t.Parallel()
	_, pool := testdb.New(t)
	ctx := context.Background()

	_, err := Verify(ctx, pool, VerifyOptions{Schema: "public"})
	require.ErrorContains(t, err, "run \"demo setup\" first")

	require.NoError(t, Setup(ctx, pool, "public", Sizes{Users: 200, Orders: 300, Flags: 3}))
	r, err := Verify(ctx, pool, VerifyOptions{Schema: "public"})
	require.ErrorIs(t, err, ErrNotVerified)
	require.ErrorContains(t, err, "180 of 200 users still have status 'enabled'")
	require.ErrorContains(t, err, "300 of 300 orders have price_eur_cents")
	require.Equal(t, int64(180), r.UsersEnabled)

	// Half done is still wrong.
	testdb.Exec(t, pool, `UPDATE users SET status = 'active' WHERE status = 'enabled' AND id <= 100`)
	_, err = Verify(ctx, pool, VerifyOptions{Schema: "public"})
	require.ErrorContains(t, err, "90 of 200 users still have status 'enabled'")

	backfill(t, pool, "public")
	r, err = Verify(ctx, pool, VerifyOptions{Schema: "public"})
	require.NoError(t, err)
	require.Equal(t, Report{Users: 200, UsersActive: 180, UsersDisabled: 20, Orders: 300, Flags: 3}, *r)

	// A wrong price is found, whatever the reason.
	testdb.Exec(t, pool, `UPDATE orders SET price_eur_cents = price_eur_cents + 1 WHERE id = 7`)
	_, err = Verify(ctx, pool, VerifyOptions{Schema: "public"})
	require.ErrorContains(t, err, "1 of 300 orders")
}

func TestVerify_ChecksTheFlagsInRedis(t *testing.T) {
	t.Parallel()
	_, pool := testdb.New(t)
	ctx := context.Background()
	rdb := newRedis(t)
	key := "test_demo_flags_" + randomSuffix() // not jobs.FeatureFlagsKey: tests run in parallel
	t.Cleanup(func() { rdb.Del(context.Background(), key) })

	require.NoError(t, Setup(ctx, pool, "public", Sizes{Users: 10, Orders: 10, Flags: 5}))
	backfill(t, pool, "public")
	opts := VerifyOptions{Schema: "public", Redis: rdb, RedisKey: key}

	_, err := Verify(ctx, pool, opts)
	require.ErrorContains(t, err, "5 of 5 feature flags are wrong in Redis")
	require.ErrorContains(t, err, "2fa_sms (want true, missing)")

	require.NoError(t, rdb.HSet(ctx, key, "2fa_sms", "true", "notifications_beta", "false", "pagination", "true",
		"flag_0004", "true", "flag_0005", "true").Err())
	_, err = Verify(ctx, pool, opts)
	require.ErrorContains(t, err, `1 of 5 feature flags are wrong in Redis (backfill 20260301120200), e.g. flag_0005 (want false, got "true")`)

	require.NoError(t, rdb.HSet(ctx, key, "flag_0005", "false").Err())
	r, err := Verify(ctx, pool, opts)
	require.NoError(t, err)
	require.True(t, r.FlagsChecked)
	require.Equal(t, int64(5), r.Flags)
}

func newRedis(t *testing.T) *redis.Client {
	t.Helper()
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opts, err := redis.ParseURL(url)
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	require.NoError(t, rdb.Ping(context.Background()).Err())
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Generated flag names stay unique past 9999 ("flag_9999", "flag_10000").
func TestSetup_ManyFlagsHaveUniqueNames(t *testing.T) {
	t.Parallel()
	_, pool := testdb.New(t)
	require.NoError(t, Setup(context.Background(), pool, "public", Sizes{Users: 1, Flags: 10000}))
	require.Equal(t, int64(10000), count(t, pool, `SELECT count(DISTINCT name) FROM feature_flags`))
	require.Equal(t, int64(1), count(t, pool, `SELECT count(*) FROM feature_flags WHERE id = 4 AND name = 'flag_0004'`), "names up to 9999 are as before")
	require.Equal(t, int64(1), count(t, pool, `SELECT count(*) FROM feature_flags WHERE id = 10000 AND name = 'flag_10000'`))
}
