package main

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/internal/testdb"
)

// A type change from numeric to bigint: amounts with cents do not survive.
const toWholeUnits = `-- table: amounts
-- key: id
-- batch: 100
-- where: units IS DISTINCT FROM whole(amount)
-- verify: units IS NOT DISTINCT FROM whole(amount)
-- lossy: amount IS NOT NULL AND whole(amount) IS NULL
%sUPDATE amounts SET units = whole(amount) WHERE id BETWEEN @first AND @last AND units IS DISTINCT FROM whole(amount);
`

// A run of a lossy conversion is refused until the file decides what becomes
// of the rows that lose data; the dry run says so first, and the decision is
// recorded with the run.
func TestLossCheck_RefusesUntilTheFileDecides(t *testing.T) {
	t.Parallel()
	url, pool := testdb.New(t)
	testdb.Exec(t, pool, `CREATE TABLE amounts (id bigint PRIMARY KEY, amount numeric, units bigint);
INSERT INTO amounts (id, amount) SELECT g, CASE WHEN g IN (7, 450, 3) THEN g + 0.5 WHEN g = 9 THEN NULL ELSE g * 10 END
FROM generate_series(1, 500) g;
INSERT INTO amounts (id, amount) VALUES (501, 1e30);
ANALYZE amounts;
CREATE FUNCTION whole(v numeric) RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	IF v::bigint::numeric = v THEN RETURN v::bigint; END IF;
	RETURN NULL;
EXCEPTION WHEN numeric_value_out_of_range THEN RETURN NULL;
END $$;`)
	dir := t.TempDir()
	writeBackfill(t, dir, "manual/11_whole_units.sql", fmt.Sprintf(toWholeUnits, ""))
	env := map[string]string{"DATABASE_URL": url, "BACKFILL_DIR": dir}

	out, _, err := runCLI(t, env, "run", "11", "--dry-run")
	require.NoError(t, err)
	require.Contains(t, out, "loss check of 11_whole_units: 4 rows would lose data in the conversion (first keys: 3, 7, 450, 501); a run would be refused")

	_, _, err = runCLI(t, env, "run", "11")
	require.Error(t, err)
	require.Contains(t, err.Error(), "11_whole_units.sql: rows would lose data in the conversion: 4 rows of amounts (lossy: amount IS NOT NULL AND whole(amount) IS NULL); first keys: 3, 7, 450, 501")
	require.Contains(t, err.Error(), `set "-- on_loss: null"`)
	require.Zero(t, queryCount(t, pool, `SELECT count(*) FROM backfill_runs`), "nothing recorded")

	writeBackfill(t, dir, "manual/11_whole_units.sql", fmt.Sprintf(toWholeUnits, "-- on_loss: fail\n"))
	_, _, err = runCLI(t, env, "run", "11")
	require.ErrorContains(t, err, "on_loss is fail")

	// Decided: the run is recorded with its decision and what it costs.
	writeBackfill(t, dir, "manual/11_whole_units.sql", fmt.Sprintf(toWholeUnits, "-- on_loss: null\n"))
	out, _, err = runCLI(t, env, "run", "11", "--dry-run")
	require.NoError(t, err)
	require.Contains(t, out, "on_loss: null, so their copies are NULL; a run may be recorded")
	_, _, err = runCLI(t, env, "run", "11")
	require.NoError(t, err)
	require.Equal(t, int64(1), queryCount(t, pool, `SELECT count(*) FROM backfill_events e JOIN backfill_runs r ON r.id = e.run_id
WHERE r.version = 11 AND e.action = 'loss_check' AND e.detail = '{"lossy_rows": 4, "first_keys": ["3", "7", "450", "501"], "on_loss": "null"}'::jsonb`))
	require.Equal(t, int64(1), queryCount(t, pool, `SELECT count(*) FROM backfill_runs WHERE version = 11 AND definition->'options'->>'on_loss' = 'null'`))

	// Bad headers are refused where they are written.
	writeBackfill(t, dir, "manual/12_bad.sql", "-- table: amounts\n-- key: id\n-- on_loss: maybe\nUPDATE amounts SET units = 1 WHERE id BETWEEN @first AND @last;\n")
	_, _, err = runCLI(t, env, "list")
	require.ErrorContains(t, err, `12_bad.sql:3: on_loss: want fail or null, got "maybe"`)
	writeBackfill(t, dir, "manual/12_bad.sql", "-- table: amounts\n-- key: id\n-- on_loss: null\nUPDATE amounts SET units = 1 WHERE id BETWEEN @first AND @last;\n")
	_, _, err = runCLI(t, env, "list")
	require.ErrorContains(t, err, "on_loss decides what becomes of lossy rows: set lossy too")
}
