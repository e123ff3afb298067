package main

import (
	"context"
	"encoding/json"
	"fmt"
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

// doctor looks at the backfill sessions for --look and says what their
// statements waited on, and what to do when one wait takes much of it.
func TestDoctor_SaysWhatTheBatchesWaitOn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := testdb.New(t)
	env := map[string]string{"DATABASE_URL": url, "BACKFILL_DIR": t.TempDir()}
	waits := func(args ...string) map[string]string {
		t.Helper()
		out, _, err := runCLI(t, env, append([]string{"doctor", "--json"}, args...)...)
		require.NoError(t, err, out)
		var findings []map[string]string
		require.NoError(t, json.Unmarshal([]byte(out), &findings), out)
		for _, f := range findings {
			if f["check"] == "waits" {
				return f
			}
		}
		t.Fatalf("no waits finding: %s", out)
		return nil
	}

	started := time.Now()
	f := waits()
	require.Equal(t, "ok", f["status"])
	require.Equal(t, "no backfill session is connected to this database", f["detail"])
	require.Less(t, time.Since(started), 5*time.Second, "nothing to look at: doctor does not wait the whole second")

	testdb.Exec(t, pool, `CREATE TABLE t (id bigint PRIMARY KEY, n int); INSERT INTO t VALUES (1, 0)`)
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	cfg.RuntimeParams["application_name"] = "backfill"
	batch, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer batch.Close(ctx)

	f = waits("--look", "200ms")
	require.Equal(t, "ok", f["status"])
	require.Equal(t, "no batch ran a statement during the 200ms looked at", f["detail"])

	// The batch waits for a lock an application's session holds.
	app, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = app.Rollback(ctx) }()
	_, err = app.Exec(ctx, `LOCK TABLE t IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)
	updated := make(chan error, 1)
	go func() {
		_, err := batch.Exec(ctx, `UPDATE t SET n = 1 WHERE id = 1`)
		updated <- err
	}()
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE application_name = 'backfill' AND wait_event = 'relation'`).Scan(&n))
		return n == 1
	}, 10*time.Second, 10*time.Millisecond)

	f = waits("--look", "200ms")
	require.Equal(t, "warn", f["status"], "%v", f)
	require.Equal(t, "1.0 backfill statements running on average over 200ms: on a CPU 0%, Lock:relation 100%", f["detail"])
	require.Contains(t, f["advice"], "the batches wait for locks other sessions hold (Lock:relation)")

	// The lock released a third of the way through a look: doctor sees the
	// wait end (pg_stat_activity is read anew at every look, not once per
	// transaction).
	looked := make(chan map[string]string, 1)
	go func() { looked <- waits("--look", "1s") }()
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, app.Rollback(ctx))
	require.NoError(t, <-updated)
	f = <-looked
	var running float64
	_, err = fmt.Sscanf(f["detail"], "%f backfill statements running", &running)
	require.NoError(t, err, "%v", f)
	require.True(t, running > 0.05 && running < 0.9, "the wait seen for part of the look: %v", f)

	f = waits("--look", "200ms")
	require.Equal(t, "no batch ran a statement during the 200ms looked at", f["detail"])

	out, _, err := runCLI(t, env, "doctor", "--look", "0")
	require.NoError(t, err, out)
	require.NotContains(t, out, "waits")
}
