package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/internal/cli"
	"github.com/backfill/backfill/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// buildEnqueue builds this command into a temporary directory.
func buildEnqueue(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	require.NoError(t, err, "the go command is needed to build enqueue")
	bin := filepath.Join(t.TempDir(), "enqueue")
	out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// writeBackfill writes a backfill file under dir (name may start with "manual/").
func writeBackfill(t *testing.T, dir, name, content string) {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

// envOf is a getenv over a map.
func envOf(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

// runCLI calls run in-process and returns its error and output.
func runCLI(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = run(ctx, args, envOf(env), &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestPending_SixteenConcurrentProcesses(t *testing.T) {
	t.Parallel()
	bin := buildEnqueue(t)
	url, pool := testdb.New(t)
	ctx := context.Background()
	testdb.Exec(t, pool, `
CREATE TABLE orders (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO orders (id) SELECT g FROM generate_series(1, 20000) g;
CREATE TABLE users (handle text PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO users (handle) SELECT 'user-' || g FROM generate_series(1, 5000) g;
CREATE TABLE sessions (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), n int NOT NULL DEFAULT 0);
INSERT INTO sessions (n) SELECT 0 FROM generate_series(1, 8000);
ANALYZE orders; ANALYZE users; ANALYZE sessions;`)

	dir := t.TempDir()
	writeBackfill(t, dir, "20260101000001_orders.sql", `-- table: orders
-- key: id
-- batch: 1000
-- partitions: 8
UPDATE orders SET n = n + 1 WHERE id BETWEEN @first AND @last;
`)
	writeBackfill(t, dir, "20260101000002_users.sql", `-- table: users
-- key: handle
-- batch: 500
-- partitions: 4
UPDATE users SET n = n + 1 WHERE handle BETWEEN @first AND @last;
`)
	writeBackfill(t, dir, "20260101000003_sessions.sql", `-- table: sessions
-- key: id
-- batch: 1000
-- partitions: 3
UPDATE sessions SET n = n + 1 WHERE id BETWEEN @first AND @last;
`)
	versions := []int64{20260101000001, 20260101000002, 20260101000003}

	const procs = 16
	cmds := make([]*exec.Cmd, procs)
	stdouts := make([]*bytes.Buffer, procs)
	stderrs := make([]*bytes.Buffer, procs)
	for i := range cmds {
		cmd := exec.Command(bin, "pending")
		cmd.Env = append(os.Environ(), "DATABASE_URL="+url, "BACKFILL_DIR="+dir)
		stdouts[i], stderrs[i] = &bytes.Buffer{}, &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = stdouts[i], stderrs[i]
		cmds[i] = cmd
	}
	// A gate: while the test holds a SHARE lock on the version table, every
	// process can read it (and find nothing enqueued) but blocks on its first
	// insert. Once all 16 wait there, the gate opens and they race inside
	// their transactions.
	gate, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer gate.Rollback(ctx) //nolint:errcheck
	_, err = gate.Exec(ctx, `LOCK TABLE backfill_runs IN SHARE MODE`)
	require.NoError(t, err)

	// Start all of them at once, then wait for each.
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, procs)
		ended atomic.Int32
	)
	for i, cmd := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if errs[i] = cmd.Start(); errs[i] == nil {
				errs[i] = cmd.Wait()
			}
			ended.Add(1)
		}()
	}
	began := time.Now()
	close(start)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var waiting int64
		require.NoError(t, pool.QueryRow(ctx, `
SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE NOT l.granted AND l.relation = 'backfill_runs'::regclass AND a.datname = current_database()`).Scan(&waiting))
		if waiting == procs {
			break
		}
		if n := ended.Load(); n > 0 || time.Now().After(deadline) {
			// Open the gate and let every process end before failing.
			require.NoError(t, gate.Rollback(ctx))
			wg.Wait()
			for i := range procs {
				t.Logf("process %d: %v: stdout %q stderr %q", i, errs[i], stdouts[i], stderrs[i])
			}
			t.Fatalf("only %d of %d processes reached the version table (%d ended before)", waiting, procs, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, gate.Commit(ctx))
	wg.Wait()
	t.Logf("16 processes of enqueue pending took %s", time.Since(began))

	enqueuedBy, alreadyTotal := map[string]int{}, 0
	summary := regexp.MustCompile(`(?m)^(\d+) enqueued, (\d+) already enqueued before$`)
	for i := range cmds {
		require.NoError(t, errs[i], "process %d: stdout %q stderr %q", i, stdouts[i], stderrs[i])
		require.Equal(t, 0, cmds[i].ProcessState.ExitCode())
		out := stdouts[i].String()
		m := summary.FindStringSubmatch(out)
		require.NotNil(t, m, "process %d printed no summary: %q", i, out)
		var n, already int
		_, err := fmt.Sscan(m[1]+" "+m[2], &n, &already)
		require.NoError(t, err)
		require.Equal(t, len(versions), n+already, "process %d: every version is either enqueued or found enqueued: %q", i, out)
		alreadyTotal += already
		for _, line := range strings.Split(out, "\n") {
			if label, ok := strings.CutPrefix(line, "enqueued "); ok {
				enqueuedBy[label]++
			}
		}
	}
	// Each version was enqueued by exactly one process; all others found it
	// enqueued.
	require.Equal(t, procs*len(versions)-len(versions), alreadyTotal)
	require.Equal(t, map[string]int{
		"20260101000001_orders run 1":   1,
		"20260101000002_users run 1":    1,
		"20260101000003_sessions run 1": 1,
	}, enqueuedBy)

	// Exactly one run per version, with one queue job per partition.
	for _, v := range versions {
		var runs int64
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM backfill_runs WHERE version = $1`, v).Scan(&runs))
		require.Equal(t, int64(1), runs, "runs of %d", v)
		var runID, partitions, jobs, owned int64
		require.NoError(t, pool.QueryRow(ctx, `
SELECT r.id,
	(SELECT count(*) FROM backfill_partitions p WHERE p.run_id = r.id),
	(SELECT count(*) FROM river_job j WHERE (j.args->>'run_id')::bigint = r.id),
	(SELECT count(*) FROM backfill_partitions p JOIN river_job j ON j.id = p.job_id
		WHERE p.run_id = r.id AND (j.args->>'run_id')::bigint = r.id AND (j.args->>'partition')::int = p.partition)
FROM backfill_runs r WHERE r.version = $1`, v).Scan(&runID, &partitions, &jobs, &owned))
		require.Greater(t, partitions, int64(1), "version %d should be split", v)
		require.Equal(t, partitions, jobs, "version %d: jobs per partition", v)
		require.Equal(t, partitions, owned, "version %d: every partition owned by its own job", v)
	}
	var allJobs int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM river_job`).Scan(&allJobs))
	var allPartitions int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM backfill_partitions`).Scan(&allPartitions))
	require.Equal(t, allPartitions, allJobs, "no stray jobs from the processes that lost")
}

func TestCLI_BadInput(t *testing.T) {
	t.Parallel()
	// None of these may get as far as the database.
	env := map[string]string{"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none?connect_timeout=1", "BACKFILL_DIR": t.TempDir()}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, `"frobnicate"`},
		{"no command", nil, "command is required"},
		{"run without VERSION", []string{"run"}, "VERSION"},
		{"run with two versions", []string{"run", "1", "2"}, "got 2"},
		{"run abc", []string{"run", "abc"}, `"abc"`},
		{"run 0", []string{"run", "0"}, `"0"`},
		{"run -5", []string{"run", "-5"}, "-5"},
		{"run 1.5", []string{"run", "1.5"}, `"1.5"`},
		{"run too big", []string{"run", "99999999999999999999"}, "99999999999999999999"},
		{"revert abc", []string{"revert", "abc"}, `"abc"`},
		{"retry without VERSION", []string{"retry"}, "VERSION"},
		{"status abc", []string{"status", "abc"}, `"abc"`},
		{"pending with an argument", []string{"pending", "now"}, `"now"`},
		{"unknown flag", []string{"status", "--colour"}, "colour"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runCLI(t, env, tc.args...)
			require.Error(t, err)
			require.Equal(t, cli.ExitUsage, cli.ExitCode(err), "bad input exits ExitUsage: %v", err)
			var ue *cli.UsageError
			require.True(t, errors.As(err, &ue), "%T %v", err, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestCLI_StatusJSON(t *testing.T) {
	t.Parallel()
	url, pool := testdb.New(t)
	testdb.Exec(t, pool, `
CREATE TABLE orders (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO orders (id) SELECT g FROM generate_series(1, 3000) g;
ANALYZE orders;`)
	dir := t.TempDir()
	env := map[string]string{"DATABASE_URL": url, "BACKFILL_DIR": dir}

	// Nothing enqueued yet: an empty array, not null.
	out, _, err := runCLI(t, env, "status", "--json")
	require.NoError(t, err)
	var empty []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &empty), out)
	require.NotNil(t, empty, "status --json must print [] when there are no runs: %q", out)
	require.Empty(t, empty)

	writeBackfill(t, dir, "20260101000001_fill_orders.sql", `-- table: orders
-- key: id
-- batch: 1000
-- partitions: 2
UPDATE orders SET n = n + 1 WHERE id BETWEEN @first AND @last;
`)
	out, _, err = runCLI(t, env, "pending")
	require.NoError(t, err)
	require.Contains(t, out, "enqueued 20260101000001_fill_orders run 1")

	for _, args := range [][]string{{"status", "--json"}, {"status", "20260101000001", "--json"}, {"status", "--json", "20260101000001"}} {
		out, _, err = runCLI(t, env, args...)
		require.NoError(t, err, "%v", args)
		dec := json.NewDecoder(strings.NewReader(out))
		dec.UseNumber()
		var list []map[string]any
		require.NoError(t, dec.Decode(&list), "%v: %s", args, out)
		require.Len(t, list, 1, "%v", args)
		obj := list[0]
		for _, key := range []string{"version", "name", "mode", "state", "rows_done", "rows_estimated", "batches_done",
			"batches_failed", "last_error", "enqueued_at", "started_at", "finished_at"} {
			require.Contains(t, obj, key, "%v: key %s in %s", args, key, out)
		}
		version, ok := obj["version"].(json.Number)
		require.True(t, ok, "version is a number, got %T", obj["version"])
		require.Equal(t, "20260101000001", version.String())
		require.Equal(t, "fill_orders", obj["name"])
		require.Equal(t, "auto", obj["mode"])
		require.Equal(t, "pending", obj["state"])
		for _, key := range []string{"rows_done", "rows_estimated", "batches_done", "batches_failed"} {
			require.IsType(t, json.Number(""), obj[key], key)
		}
		require.Equal(t, json.Number("0"), obj["rows_done"])
		require.Equal(t, json.Number("3000"), obj["rows_estimated"])
		require.Nil(t, obj["last_error"])
		require.Nil(t, obj["started_at"])
		require.Nil(t, obj["finished_at"])
		enqueuedAt, ok := obj["enqueued_at"].(string)
		require.True(t, ok, "enqueued_at is a string, got %T", obj["enqueued_at"])
		_, err = time.Parse(time.RFC3339Nano, enqueuedAt)
		require.NoError(t, err)
	}
}

func TestCLI_BadDirContent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeBackfill(t, dir, "20260101000001_fine.sql", `-- table: orders
-- key: id
UPDATE orders SET n = n + 1 WHERE id BETWEEN @first AND @last;
`)
	writeBackfill(t, dir, "20260101000002_bad.sql", `-- table: orders
-- key: id
-- colour: blue
UPDATE orders SET n = n + 1 WHERE id BETWEEN @first AND @last;
`)
	bad := filepath.Join(dir, "20260101000002_bad.sql")
	env := map[string]string{"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"}
	for _, args := range [][]string{
		{"pending", "--dir", dir},
		{"run", "20260101000001", "--dir", dir},
		{"status", "--dir", dir},
	} {
		_, _, err := runCLI(t, env, args...)
		require.Error(t, err, "%v", args)
		require.Contains(t, err.Error(), bad+":3:", "%v: the error names file and line", args)
		require.Contains(t, err.Error(), "colour")
		require.Equal(t, 1, cli.ExitCode(err))
	}
}

func TestCLI_PasswordNotInConnectionErrors(t *testing.T) {
	t.Parallel()
	const secret = "s3cretpw"
	dir := t.TempDir()
	for _, tc := range []struct {
		name, url string
	}{
		{"url with password", "postgres://u:" + secret + "@127.0.0.1:1/x?connect_timeout=2"},
		{"password query parameter", "postgres://u@127.0.0.1:1/x?connect_timeout=2&password=" + secret},
		{"keyword/value string", "host=127.0.0.1 port=1 user=u password=" + secret + " dbname=x connect_timeout=2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, args := range [][]string{
				{"pending", "--database-url", tc.url, "--dir", dir},
				{"migrate", "--database-url", tc.url},
				{"status", "--json", "--database-url", tc.url, "--dir", dir},
			} {
				stdout, stderr, err := runCLI(t, nil, args...)
				require.Error(t, err, "%v", args)
				require.Equal(t, 1, cli.ExitCode(err))
				require.NotContains(t, err.Error(), secret, "%v", args[0])
				require.NotContains(t, stdout, secret)
				require.NotContains(t, stderr, secret)
				// The same from the environment.
				_, _, err = runCLI(t, map[string]string{"DATABASE_URL": tc.url, "BACKFILL_DIR": dir}, args[0])
				require.Error(t, err)
				require.NotContains(t, err.Error(), secret, "%v from DATABASE_URL", args[0])
			}
		})
	}
}

// A URL that does not parse (here: a port that is not a number) must not
// leak its password either.
func TestCLI_PasswordNotInParseErrors(t *testing.T) {
	t.Parallel()
	const secret = "s3cretpw"
	for name, url := range map[string]string{
		"port not a number": "postgres://u:" + secret + "@127.0.0.1:notaport/x",
		"unclosed bracket":  "postgres://u:" + secret + "@[::1/x",
	} {
		t.Run(name, func(t *testing.T) {
			stdout, stderr, err := runCLI(t, nil, "migrate", "--database-url", url)
			require.Error(t, err, url)
			require.Equal(t, 1, cli.ExitCode(err))
			require.NotContains(t, err.Error(), secret, url)
			require.NotContains(t, stdout, secret)
			require.NotContains(t, stderr, secret)
		})
	}
}
