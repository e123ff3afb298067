package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/internal/cli"
	"github.com/backfill/backfill/internal/testdb"
)

// newCopy runs "enqueue new NAME --copy-column SPEC [args]" and returns the
// expand, backfill and contract files it wrote and the backfill's version.
func newCopy(t *testing.T, env map[string]string, sqlDir, name, spec string, args ...string) (expand, backfill, contract string, version string) {
	t.Helper()
	out, errOut, err := runCLI(t, env, append([]string{"new", name, "--copy-column", spec, "--sql-dir", sqlDir}, args...)...)
	require.NoError(t, err, "%s", errOut)
	paths := strings.Fields(out)
	require.Len(t, paths, 3, "the three files: %s", out)
	expand, backfill, contract = paths[0], paths[1], paths[2]
	require.True(t, strings.HasSuffix(expand, ".expand.sql"), expand)
	require.True(t, strings.HasSuffix(contract, ".contract.sql"), contract)
	require.Contains(t, errOut, "enqueue wait")
	return expand, backfill, contract, versionOf(backfill)
}

// applySQL runs a generated schema file as the application's migration would.
func applySQL(t *testing.T, pool *pgxpool.Pool, path string) {
	t.Helper()
	sql, err := os.ReadFile(path)
	require.NoError(t, err)
	testdb.Exec(t, pool, string(sql))
}

// A column rename through the whole kit: the expand file's trigger keeps the
// columns in step both ways, the backfill copies the rows from before it,
// verify agrees, and the contract drops the old column and keeps NOT NULL.
func TestCopyColumn_RenameEndToEnd(t *testing.T) {
	t.Parallel()
	url, pool := testdb.New(t)
	testdb.Exec(t, pool, `CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL, note text);
INSERT INTO accounts (id, email) SELECT g, 'user' || g || '@example.com' FROM generate_series(1, 3000) g;
ANALYZE accounts;`)
	dir, sqlDir := t.TempDir(), t.TempDir()
	env := map[string]string{"DATABASE_URL": url, "BACKFILL_DIR": dir}
	expand, backfill, contract, version := newCopy(t, env, sqlDir, "rename_email", "accounts.email:email_address")
	text, err := os.ReadFile(backfill)
	require.NoError(t, err)
	require.NotContains(t, string(text), "lossy", "a rename loses nothing")
	require.Contains(t, string(text), "-- verify: \"email_address\" IS NOT DISTINCT FROM \"email\"")

	// Deploy 1: the trigger dual-writes from now on, whichever column is written.
	applySQL(t, pool, expand)
	testdb.Exec(t, pool, `INSERT INTO accounts (id, email) VALUES (5001, 'old@code');
INSERT INTO accounts (id, email_address) VALUES (5002, 'new@code');
UPDATE accounts SET email = 'changed@old' WHERE id = 10;
UPDATE accounts SET email_address = 'changed@new' WHERE id = 11;
UPDATE accounts SET note = 'untouched columns' WHERE id = 12;`)
	require.Equal(t, int64(5), queryCount(t, pool, `SELECT count(*) FROM accounts WHERE email = email_address`),
		"the rows written since the expand agree (rows 5001, 5002, 10, 11) and row 12 got its copy from its update")
	require.Equal(t, "changed@new", queryText(t, pool, `SELECT email FROM accounts WHERE id = 11`))

	// Before the backfill, verify finds the rows from before the expand.
	_, _, err = runCLI(t, env, "verify", version)
	require.Equal(t, 1, cli.ExitCode(err), "%v", err)
	require.Contains(t, err.Error(), "2997 of 3002 rows of public.accounts disagree")

	_, _, err = runCLI(t, env, "pending")
	require.NoError(t, err)
	startWorkers(t, url, 2)
	_, _, err = runCLI(t, env, "wait", version, "--timeout", "25s")
	require.NoError(t, err)
	out, _, err := runCLI(t, env, "verify", version)
	require.NoError(t, err)
	require.Contains(t, out, "all 3002 rows of public.accounts agree")

	// The last deploy: the old column goes, the copy keeps NOT NULL.
	applySQL(t, pool, contract)
	require.Zero(t, queryCount(t, pool, `SELECT count(*) FROM information_schema.columns WHERE table_name = 'accounts' AND column_name = 'email'`))
	require.Equal(t, "NO", queryText(t, pool, `SELECT is_nullable FROM information_schema.columns WHERE table_name = 'accounts' AND column_name = 'email_address'`))
	require.Zero(t, queryCount(t, pool, `SELECT count(*) FROM pg_trigger WHERE tgrelid = 'accounts'::regclass AND NOT tgisinternal`))
	require.Equal(t, "user42@example.com", queryText(t, pool, `SELECT email_address FROM accounts WHERE id = 42`))
}

// A type change that loses data: the loss check refuses the run with the
// rows' keys until the file decides, and the rest copies and verifies.
func TestCopyColumn_TypeChangeWithLoss(t *testing.T) {
	t.Parallel()
	url, pool := testdb.New(t)
	testdb.Exec(t, pool, `CREATE TABLE orders (id bigint PRIMARY KEY, price numeric);
INSERT INTO orders (id, price) SELECT g, CASE WHEN g IN (17, 1234) THEN g + 0.25 WHEN g = 99 THEN NULL ELSE g * 100 END
FROM generate_series(1, 2000) g;
ANALYZE orders;`)
	dir, sqlDir := t.TempDir(), filepath.Join(t.TempDir(), "db", "migrations")
	env := map[string]string{"DATABASE_URL": url, "BACKFILL_DIR": dir}
	expand, backfill, contract, version := newCopy(t, env, sqlDir, "price_to_cents", "public.orders.price:price_cents", "--type", "bigint", "--manual")
	require.Equal(t, filepath.Join(dir, "manual"), filepath.Dir(backfill))
	require.Equal(t, sqlDir, filepath.Dir(expand))
	applySQL(t, pool, expand)
	testdb.Exec(t, pool, `INSERT INTO orders (id, price) VALUES (3000, 7.5), (3001, 800)`)
	require.Equal(t, int64(800), queryCount(t, pool, `SELECT price_cents FROM orders WHERE id = 3001`), "the trigger converts")
	require.Equal(t, int64(1), queryCount(t, pool, `SELECT count(*) FROM orders WHERE id = 3000 AND price_cents IS NULL`), "a value that does not survive is NULL")

	out, _, err := runCLI(t, env, "run", version, "--dry-run")
	require.NoError(t, err)
	require.Contains(t, out, "3 rows would lose data in the conversion (first keys: 17, 1234, 3000)")
	_, _, err = runCLI(t, env, "run", version)
	require.ErrorContains(t, err, "rows would lose data in the conversion: 3 rows of public.orders")

	// Decided: NULL copies for those three.
	text, err := os.ReadFile(backfill)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(backfill, []byte(strings.Replace(string(text), "-- (off) on_loss: null", "-- on_loss: null", 1)), 0o644))
	_, _, err = runCLI(t, env, "run", version)
	require.NoError(t, err)
	startWorkers(t, url, 1)
	_, _, err = runCLI(t, env, "wait", version, "--timeout", "25s")
	require.NoError(t, err)
	out, _, err = runCLI(t, env, "verify", version)
	require.NoError(t, err, "the lossy rows' NULL copies are what the conversion gives them")
	require.Contains(t, out, "all 2002 rows of public.orders agree")
	require.Equal(t, int64(3), queryCount(t, pool, `SELECT count(*) FROM orders WHERE price_cents IS NULL AND price IS NOT NULL`), "rows 17, 1234 and 3000")
	require.Equal(t, int64(150000), queryCount(t, pool, `SELECT price_cents FROM orders WHERE id = 1500`))

	applySQL(t, pool, contract)
	require.Zero(t, queryCount(t, pool, `SELECT count(*) FROM pg_proc WHERE proname LIKE 'orders_price_cents_%'`), "the contract drops the kit's functions")
}

// Bad specifications fail before anything is written.
func TestCopyColumn_BadInput(t *testing.T) {
	t.Parallel()
	url, pool := testdb.New(t)
	testdb.Exec(t, pool, `CREATE TABLE pairs (a int, b int, c text, PRIMARY KEY (a, b)); CREATE TABLE solo (id int PRIMARY KEY, c text, d text)`)
	dir := t.TempDir()
	env := map[string]string{"DATABASE_URL": url, "BACKFILL_DIR": dir}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"solo.c"}, "wants TABLE.OLD:NEW"},
		{[]string{"solo.c:C2"}, `"C2" must be a lower-case SQL name`},
		{[]string{"solo.c:c"}, "another name"},
		{[]string{"solo.nope:e"}, "table solo has no column nope"},
		{[]string{"missing.c:e"}, "table missing has no column c"},
		{[]string{"solo.c:d"}, "solo already has a column d"},
		{[]string{"pairs.c:e"}, "pairs needs a primary key of one column"},
		{[]string{"solo.c:e", "--type", "bigint; DROP TABLE solo"}, "is not a type name"},
		{[]string{"solo.c:e", "--type", "no_such_type"}, "is not a type of this database"},
	} {
		_, _, err := runCLI(t, env, append([]string{"new", "x", "--copy-column"}, tc.args...)...)
		require.ErrorContains(t, err, tc.want, "%q", tc.args)
	}
	_, _, err := runCLI(t, env, "new", "x", "--type", "bigint")
	require.Equal(t, cli.ExitUsage, cli.ExitCode(err))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "nothing written")
}

func queryText(t *testing.T, pool *pgxpool.Pool, sql string) string {
	t.Helper()
	var s string
	require.NoError(t, pool.QueryRow(context.Background(), sql).Scan(&s))
	return s
}

// tablesAgree counts the rows of a and b that the other lacks or has
// otherwise.
func tablesAgree(t *testing.T, pool *pgxpool.Pool, a, b string) int64 {
	t.Helper()
	return queryCount(t, pool, `SELECT count(*) FROM ((TABLE `+a+` EXCEPT TABLE `+b+`) UNION ALL (TABLE `+b+` EXCEPT TABLE `+a+`)) d`)
}

// A table rename through the whole kit: writes to either table are mirrored
// into the other, the backfill copies the rows from before the expand,
// verify agrees, and after the contract the new table keeps its sequence.
func TestCopyTable_RenameEndToEnd(t *testing.T) {
	t.Parallel()
	url, pool := testdb.New(t)
	testdb.Exec(t, pool, `CREATE TABLE orders (id serial PRIMARY KEY, customer text NOT NULL, total numeric CHECK (total >= 0), note text);
INSERT INTO orders (customer, total) SELECT 'c' || g, g * 1.5 FROM generate_series(1, 2500) g;
ANALYZE orders;`)
	dir, sqlDir := t.TempDir(), t.TempDir()
	env := map[string]string{"DATABASE_URL": url, "BACKFILL_DIR": dir}
	out, errOut, err := runCLI(t, env, "new", "rename_orders", "--copy-table", "orders:purchases", "--sql-dir", sqlDir)
	require.NoError(t, err, errOut)
	paths := strings.Fields(out)
	require.Len(t, paths, 3)
	expand, contract, version := paths[0], paths[2], versionOf(paths[1])

	applySQL(t, pool, expand)
	testdb.Exec(t, pool, `INSERT INTO orders (customer, total) VALUES ('new-old', 1);
INSERT INTO purchases (customer, total) VALUES ('new-new', 2);
UPDATE orders SET note = 'via old' WHERE id = 10;
UPDATE purchases SET note = 'via new' WHERE id = 2502;
DELETE FROM orders WHERE id = 2501;
UPDATE orders SET id = 9000 WHERE id = 20;`)
	require.Equal(t, []int64{10, 2502, 9000}, queryInts(t, pool, `SELECT id FROM purchases ORDER BY id`),
		"the rows written since the expand, through either table; 2501 deleted through the old one, 20 moved to 9000")
	require.Equal(t, "via new", queryText(t, pool, `SELECT note FROM orders WHERE id = 2502`))
	_, _, err = runCLI(t, env, "verify", version)
	require.Equal(t, 1, cli.ExitCode(err), "%v", err)
	require.Contains(t, err.Error(), "2498 of 2501 rows of public.orders disagree", "all but 10, 2502 and 9000")

	_, _, err = runCLI(t, env, "pending")
	require.NoError(t, err)
	startWorkers(t, url, 2)
	_, _, err = runCLI(t, env, "wait", version, "--timeout", "25s")
	require.NoError(t, err)
	out, _, err = runCLI(t, env, "verify", version)
	require.NoError(t, err)
	require.Contains(t, out, "all 2501 rows of public.orders agree")
	require.Zero(t, tablesAgree(t, pool, "orders", "purchases"), "the two tables hold the same rows")
	require.Equal(t, "via old", queryText(t, pool, `SELECT note FROM purchases WHERE id = 10`))

	applySQL(t, pool, contract)
	require.Zero(t, queryCount(t, pool, `SELECT count(*) FROM pg_class WHERE relname = 'orders'`))
	testdb.Exec(t, pool, `INSERT INTO purchases (customer, total) VALUES ('after', 3)`)
	require.Equal(t, int64(2503), queryCount(t, pool, `SELECT max(id) FROM purchases WHERE id < 9000`), "the serial's sequence moved to the new table")
	_, err = pool.Exec(context.Background(), `INSERT INTO purchases (customer, total) VALUES ('bad', -1)`)
	require.ErrorContains(t, err, "check constraint", "constraints came along")
}

func queryInts(t *testing.T, pool *pgxpool.Pool, sql string) []int64 {
	t.Helper()
	rows, err := pool.Query(context.Background(), sql)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	return out
}
