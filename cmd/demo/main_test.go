package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/internal/cli"
	"github.com/backfill/backfill/internal/demo"
	"github.com/backfill/backfill/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

func runDemo(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func TestRun_SetupThenVerify(t *testing.T) {
	t.Parallel()
	url, pool := testdb.New(t)
	env := map[string]string{"DATABASE_URL": url}

	out, _, err := runDemo(t, env, "setup", "--users", "50", "--orders", "80", "--flags", "4")
	require.NoError(t, err)
	require.Contains(t, out, "schema backfill_demo recreated")
	require.Equal(t, int64(45), count(t, pool, `SELECT count(*) FROM backfill_demo.users WHERE status = 'enabled'`))
	require.Equal(t, int64(80), count(t, pool, `SELECT count(*) FROM backfill_demo.orders`))
	require.Equal(t, int64(4), count(t, pool, `SELECT count(*) FROM backfill_demo.feature_flags`))

	_, _, err = runDemo(t, env, "verify")
	require.ErrorIs(t, err, demo.ErrNotVerified)
	require.Equal(t, 1, cli.ExitCode(err))

	testdb.Exec(t, pool, `UPDATE backfill_demo.users SET status = 'active' WHERE status = 'enabled';
UPDATE backfill_demo.orders SET price_eur_cents = price_cents * 92 / 100`)
	out, _, err = runDemo(t, env, "verify")
	require.NoError(t, err)
	require.Contains(t, out, "ok: users: 45 active, 5 disabled, none enabled")
	require.Contains(t, out, "skipped: feature flags in Redis (no REDIS_URL)")

	// Setup again starts over, dropping whatever else is in the schema.
	testdb.Exec(t, pool, `CREATE TABLE backfill_demo.river_job (id bigint)`)
	_, _, err = runDemo(t, env, "setup", "--users", "10", "--orders", "10")
	require.NoError(t, err)
	require.Zero(t, count(t, pool, `SELECT count(*) FROM pg_class WHERE relname = 'river_job' AND relnamespace = 'backfill_demo'::regnamespace`))
	require.Equal(t, int64(9), count(t, pool, `SELECT count(*) FROM backfill_demo.users WHERE status = 'enabled'`))

	// With --if-missing an existing demo schema, and its runs, stay as they are.
	out, _, err = runDemo(t, env, "setup", "--if-missing", "--users", "30")
	require.NoError(t, err)
	require.Contains(t, out, "left as it is")
	require.Equal(t, int64(10), count(t, pool, `SELECT count(*) FROM backfill_demo.users`))
}

func TestRun_SetupTenThousandFlags(t *testing.T) {
	t.Parallel()
	url, pool := testdb.New(t)
	out, _, err := runDemo(t, map[string]string{"DATABASE_URL": url}, "setup", "--users", "10", "--orders", "10", "--flags", "10000")
	require.NoError(t, err)
	require.Contains(t, out, "10000 feature flags")
	require.Equal(t, int64(10000), count(t, pool, `SELECT count(DISTINCT name) FROM backfill_demo.feature_flags`))
}

func TestRun_UsageErrors(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://nobody:secret@127.0.0.1:1/none?sslmode=disable"}
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"setup", "extra"},
		{"setup", "--users", "x"},
		{"setup", "--flags", "2"},
		{"setup", "--users", "0", "--orders", "5"},
		{"verify", "--users", "5"}, // setup's flags only
	} {
		out, errOut, err := runDemo(t, env, args...)
		require.Error(t, err, "%q", args)
		require.Equal(t, cli.ExitUsage, cli.ExitCode(err), "%q: %v", args, err)
		require.Empty(t, out+errOut, "%q: the error is reported in one line by main, without the usage", args)
	}
	out, _, err := runDemo(t, env, "help")
	require.NoError(t, err)
	require.Contains(t, out, "Usage: demo COMMAND")
}

func TestRun_ConnectionErrorHidesThePassword(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://nobody:secret@127.0.0.1:1/none?sslmode=disable"}
	for _, cmd := range []string{"setup", "verify"} {
		_, _, err := runDemo(t, env, cmd)
		require.Error(t, err)
		require.Equal(t, 1, cli.ExitCode(err))
		require.NotContains(t, err.Error(), "secret")
	}
}

func count(t *testing.T, pool *pgxpool.Pool, sql string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, pool.QueryRow(context.Background(), sql).Scan(&n))
	return n
}
