package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/internal/testdb"
)

// The engine keeps to its own schema (BACKFILL_SCHEMA), whatever the
// search_path: an application's own river_job in public is neither used nor
// touched, nothing of ours lands in public, and a command pointed at a schema
// without the engine's tables says so.
func TestSchema_OwnSchemaBesideTheApplications(t *testing.T) {
	t.Parallel()
	bin := buildEnqueue(t)
	url, pool := testdb.NewEmpty(t)
	ctx := context.Background()
	testdb.Exec(t, pool, `CREATE TABLE public.orders (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO public.orders (id) SELECT g FROM generate_series(1, 500) g;
ANALYZE public.orders;
-- The application's own River, say.
CREATE TABLE public.river_job (id bigint PRIMARY KEY, kind text NOT NULL);
INSERT INTO public.river_job VALUES (1, 'send_email');`)
	dir := t.TempDir()
	writeBackfill(t, dir, "1_orders.sql", "-- table: orders\n-- key: id\nUPDATE orders SET n = n + 1 WHERE id BETWEEN @first AND @last;\n")

	enqueue := func(schema string, args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "DATABASE_URL="+url, "BACKFILL_DIR="+dir, "BACKFILL_SCHEMA="+schema, "PGOPTIONS=")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := enqueue("ops_backfill", "migrate")
	require.NoError(t, err, out)
	out, err = enqueue("ops_backfill", "pending")
	require.NoError(t, err, out)
	out, err = enqueue("ops_backfill", "status", "--json")
	require.NoError(t, err, out)
	require.Contains(t, out, `"name": "orders"`)

	count := func(table string) (n int) {
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n), table)
		return n
	}
	require.Equal(t, 1, count("ops_backfill.backfill_runs"))
	require.Positive(t, count("ops_backfill.river_job"))
	require.Equal(t, 1, count("public.river_job"), "the application's river_job is untouched")
	var inPublic int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relname LIKE 'backfill\_%'`).Scan(&inPublic))
	require.Zero(t, inPublic, "nothing of the engine's in public")

	// Another schema holds no version table: a clear refusal.
	out, err = enqueue("backfill", "status")
	require.Error(t, err)
	require.Contains(t, out, `schema "backfill" has no version table`)
	require.Equal(t, 1, strings.Count(strings.TrimSpace(out), "\n")+1, "one line: %s", out)
}
