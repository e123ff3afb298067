package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/internal/cli"
	"github.com/backfill/backfill/internal/testdb"
)

// doctor finds what keeps backfills from moving, says what to do, and exits
// 1 when something is wrong.
func TestDoctor_FindsAndAdvises(t *testing.T) {
	t.Parallel()
	url, pool := testdb.New(t)
	dir := t.TempDir()
	env := map[string]string{"DATABASE_URL": url, "BACKFILL_DIR": dir}

	out, _, err := runCLI(t, env, "doctor")
	require.NoError(t, err, out)
	for _, check := range []string{"connection", "schema", "workers", "queue", "partitions", "locks"} {
		require.Regexp(t, `(?m)^ok    `+check+` `, out)
	}
	require.NotContains(t, out, "pooler", "connected to the server itself")

	// A run and no worker: the run waits for one.
	testdb.Exec(t, pool, `CREATE TABLE t (id bigint PRIMARY KEY, n int); INSERT INTO t SELECT g, 0 FROM generate_series(1, 100) g`)
	writeBackfill(t, dir, "1_touch.sql", "-- table: t\n-- key: id\nUPDATE t SET n = 1 WHERE id BETWEEN @first AND @last;\n")
	_, _, err = runCLI(t, env, "pending")
	require.NoError(t, err)
	out, _, err = runCLI(t, env, "doctor")
	require.Equal(t, 1, cli.ExitCode(err), "%v", err)
	require.Contains(t, out, "fail  workers     no worker is alive, and 1 runs wait for one")
	require.Contains(t, out, "-> start a worker process")

	// Its jobs gone: partitions owned by nobody.
	testdb.Exec(t, pool, `DELETE FROM river_job`)
	out, _, _ = runCLI(t, env, "doctor")
	require.Contains(t, out, "fail  partitions  1 partitions of active runs are owned by a dead worker or an ended job")

	// A backfill session idle in a transaction: a leaked lock.
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	cfg.RuntimeParams["application_name"] = "backfill"
	leak, err := pgx.ConnectConfig(context.Background(), cfg)
	require.NoError(t, err)
	defer leak.Close(context.Background())
	_, err = leak.Exec(context.Background(), `BEGIN; LOCK TABLE t IN ROW EXCLUSIVE MODE`)
	require.NoError(t, err)
	time.Sleep(300 * time.Millisecond)
	out, _, err = runCLI(t, env, "doctor", "--idle-limit", "200ms", "--json")
	require.Equal(t, 1, cli.ExitCode(err))
	var findings []map[string]string
	require.NoError(t, json.Unmarshal([]byte(out), &findings), out)
	var locks map[string]string
	for _, f := range findings {
		if f["check"] == "locks" {
			locks = f
		}
	}
	require.Equal(t, "fail", locks["status"], "%v", findings)
	require.Contains(t, locks["detail"], "idle in a transaction")
	require.Contains(t, locks["advice"], "pg_terminate_backend(")

	// A schema older than the binary: migrate, and nothing else is read.
	testdb.Exec(t, pool, `DELETE FROM backfill_schema_version WHERE version = (SELECT max(version) FROM backfill_schema_version)`)
	out, _, err = runCLI(t, env, "doctor")
	require.Equal(t, 1, cli.ExitCode(err))
	require.Contains(t, out, "-> run enqueue migrate")
	require.Equal(t, 2, strings.Count(out, "\n")-strings.Count(out, "->"), "connection and schema only: %s", out)
}
