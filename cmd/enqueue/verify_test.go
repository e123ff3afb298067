package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/internal/cli"
	"github.com/backfill/backfill/internal/testdb"
)

// A copy backfill whose verify condition says the copy agrees.
const copyPrices = `-- table: prices
-- key: id
-- batch: 100
-- rate: 2000
-- where: cents_copy IS DISTINCT FROM cents
-- verify: cents_copy IS NOT DISTINCT FROM cents
UPDATE prices SET cents_copy = cents WHERE id BETWEEN @first AND @last AND cents_copy IS DISTINCT FROM cents;
`

// verify checks every row, at the backfill's rate, and says which disagree.
func TestVerify_CountsAndShowsTheRowsThatDisagree(t *testing.T) {
	t.Parallel()
	url, pool := testdb.New(t)
	testdb.Exec(t, pool, `CREATE TABLE prices (id bigint PRIMARY KEY, cents bigint, cents_copy bigint);
INSERT INTO prices (id, cents) SELECT g, CASE WHEN g % 100 = 0 THEN NULL ELSE g * 7 END FROM generate_series(1, 1000) g;
ANALYZE prices;`)
	dir := t.TempDir()
	writeBackfill(t, dir, "7_copy_prices.sql", copyPrices)
	writeBackfill(t, dir, "8_where_only.sql", "-- table: prices\n-- key: id\n-- where: cents_copy IS NULL AND cents IS NOT NULL\nUPDATE prices SET cents_copy = cents WHERE id BETWEEN @first AND @last;\n")
	writeBackfill(t, dir, "9_blind.sql", "-- table: prices\n-- key: id\nUPDATE prices SET cents_copy = cents WHERE id BETWEEN @first AND @last;\n")
	env := map[string]string{"DATABASE_URL": url, "BACKFILL_DIR": dir}

	// Nothing copied yet: every row with a price disagrees (NULL = NULL agrees).
	_, _, err := runCLI(t, env, "verify", "7")
	require.Equal(t, 1, cli.ExitCode(err), "%v", err)
	require.Contains(t, err.Error(), "7_copy_prices: 990 of 1000 rows of prices disagree (they fail cents_copy IS NOT DISTINCT FROM cents); first keys: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10")

	// Copied, then three rows changed behind the copy's back: those, in key order.
	testdb.Exec(t, pool, `UPDATE prices SET cents_copy = cents; UPDATE prices SET cents = cents + 1 WHERE id IN (999, 17, 501)`)
	started := time.Now()
	out, _, err := runCLI(t, env, "verify", "7", "--progress-every", "200ms")
	took := time.Since(started)
	require.Equal(t, 1, cli.ExitCode(err), "%v", err)
	require.Contains(t, err.Error(), "3 of 1000 rows of prices disagree")
	require.Contains(t, err.Error(), "first keys: 17, 501, 999")
	require.Contains(t, out, "of ~1000 rows checked", "progress while it works")
	// At 2000 rows/s, in batches of 100 (the first one free): at least 0.45 s.
	require.GreaterOrEqual(t, took, 400*time.Millisecond, "verify keeps to the backfill's rate")

	// All agree: exit 0; the where condition is the check without a verify one.
	testdb.Exec(t, pool, `UPDATE prices SET cents_copy = cents`)
	out, _, err = runCLI(t, env, "verify", "7", "--batch", "1000")
	require.NoError(t, err)
	require.Contains(t, out, "verified 7_copy_prices: all 1000 rows of prices agree (cents_copy IS NOT DISTINCT FROM cents)")
	out, _, err = runCLI(t, env, "verify", "8")
	require.NoError(t, err)
	require.Contains(t, out, "all 1000 rows of prices agree (NOT (cents_copy IS NULL AND cents IS NOT NULL))")
	testdb.Exec(t, pool, `UPDATE prices SET cents_copy = NULL WHERE id = 42`)
	_, _, err = runCLI(t, env, "verify", "8")
	require.Equal(t, 1, cli.ExitCode(err))
	require.Contains(t, err.Error(), "1 of 1000 rows of prices disagree")

	// Nothing to check against, bad input: errors that say so.
	_, _, err = runCLI(t, env, "verify", "9")
	require.ErrorContains(t, err, "nothing to verify")
	for _, args := range [][]string{{"verify"}, {"verify", "x"}, {"verify", "7", "--batch", "-1"}, {"verify", "7", "--progress-every", "0s"}} {
		_, _, err = runCLI(t, env, args...)
		require.Equal(t, cli.ExitUsage, cli.ExitCode(err), "%q: %v", args, err)
	}
	// The verify condition is read-only: one that writes fails, and writes nothing.
	writeBackfill(t, dir, "10_sneaky.sql", "-- table: prices\n-- key: id\n-- verify: nextval('sneaky') > 0\nUPDATE prices SET cents_copy = cents WHERE id BETWEEN @first AND @last;\n")
	testdb.Exec(t, pool, `CREATE SEQUENCE sneaky`)
	_, _, err = runCLI(t, env, "verify", "10")
	require.ErrorContains(t, err, "read-only transaction")
}
