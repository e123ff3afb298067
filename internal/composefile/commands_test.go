package composefile

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/demo"
	"github.com/backfill/backfill/internal/testdb"
	"github.com/backfill/backfill/jobs"
)

// How long a worker must stay up, how long SIGTERM may take to stop it, and
// how long an enqueue command may take.
const (
	workerUpFor     = 2 * time.Second
	workerStopLimit = 15 * time.Second
	oneShotLimit    = 60 * time.Second
)

// buildBinaries builds our binaries (enqueue, worker, demo) as the
// Dockerfile does, into a directory of t's.
func buildBinaries(t *testing.T) string {
	t.Helper()
	started := time.Now()
	dir := t.TempDir()
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, bin := range ourBinaries {
		args = append(args, "./cmd/"+bin)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build:\n%s", out)
	t.Logf("built %s in %s", strings.Join(ourBinaries, ", "), time.Since(started).Round(time.Millisecond))
	return dir
}

// ---------------------------------------------------------------------------
// Running the compose file's commands.

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testRedisURL is the local Redis the worker gets instead of the compose one.
func testRedisURL() string {
	return cmp.Or(os.Getenv("TEST_REDIS_URL"), "redis://127.0.0.1:6379")
}

// backfillDir is what BACKFILL_DIR (/app/backfills in the image) becomes:
// the repository's backfills, or an empty directory while there are none.
func backfillDir(t *testing.T) string {
	dir := filepath.Join(root(t), "backfills")
	if _, err := os.Stat(dir); err != nil {
		t.Logf("no %s yet: using an empty backfill directory", dir)
		return t.TempDir()
	}
	return dir
}

// commandFor turns a service's argv and environment into a process on the
// test's binaries, database and Redis. The environment is the service's
// only, as in a container: nothing leaks in from the test's. It keeps
// everything else of the service's, PGOPTIONS (the demo's search_path)
// included.
func commandFor(t *testing.T, bins string, s *service, words []string, dbURL, dir string) *exec.Cmd {
	t.Helper()
	bin := binaryOf(t, s.name, words)
	args := replaceFlag(words[1:], "database-url", dbURL)
	args = replaceFlag(args, "redis-url", testRedisURL())
	args = replaceFlag(args, "dir", dir)

	env := map[string]string{}
	for k, v := range s.Environment {
		env[k] = interpolate(t, v)
	}
	env["DATABASE_URL"] = dbURL
	if _, ok := env["REDIS_URL"]; ok {
		env["REDIS_URL"] = testRedisURL()
	}
	env["BACKFILL_DIR"] = dir // the Dockerfile's ENV, pointed at the checkout
	env["PATH"] = bins
	cmd := exec.Command(filepath.Join(bins, bin), args...)
	for _, k := range keys(env) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	return cmd
}

// TestComposeCommandsRun does what "docker compose up" does, without
// Docker: every service of our image, in dependency order (demo setup,
// enqueue migrate, enqueue pending, then two worker replicas), with its
// exact argv and its own environment, except that DATABASE_URL is a fresh
// test database and REDIS_URL the local Redis. Nothing else prepares the
// database: the demo service creates the tables the seed backfills work on.
func TestComposeCommandsRun(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	ep := loadDockerfile(t).entrypoint(t)
	bins := buildBinaries(t)
	dir := backfillDir(t)
	dbURL, pool := testdb.New(t)

	ran := 0
	var last *service // the last one-shot, for "enqueue status" below
	for _, name := range startOrder(t, c) {
		s := c.Services[name]
		if !c.ourImage(s) {
			continue
		}
		words := argvOf(t, s, ep)
		ran++
		ok := t.Run(name, func(t *testing.T) {
			if oneShot(t, c, s, ep) {
				runOneShot(t, bins, s, words, dbURL, dir)
			} else {
				runWorkers(t, bins, s, words, dbURL, dir)
			}
		})
		// Compose starts nothing whose dependencies failed.
		require.True(t, ok, "service %s failed; not running the services after it", name)
		if oneShot(t, c, s, ep) {
			last = s
		}
	}
	require.NotZero(t, ran, "no service of the compose file runs our binaries")

	// For the log: what the runs look like after the workers' two seconds,
	// seen as the services see the database (their PGOPTIONS).
	if last != nil {
		st := commandFor(t, bins, last, []string{enqueueBin, "status"}, dbURL, dir)
		out, err := st.CombinedOutput()
		t.Logf("enqueue status (err %v):\n%s", err, out)
	}

	checkEnqueuedOnce(t, c, pool, dir)
}

// checkEnqueuedOnce checks, after the whole compose file ran, that each
// automatic backfill was enqueued exactly once (one up run, run 1) and
// nothing else, in the demo's schema when there is a demo service, and that
// nothing landed in public (the test database's template has the version
// table there too).
func checkEnqueuedOnce(t *testing.T, c *composeFile, pool *pgxpool.Pool, dir string) {
	t.Helper()
	ctx := context.Background()
	reg, err := jobs.NewRegistry(dir, nil)
	require.NoError(t, err, "loading the backfills of %s", dir)
	var want []string
	for _, d := range reg.All() {
		if d.Mode == batches.ModeAuto {
			want = append(want, fmt.Sprintf("%d %s up run 1", d.Version, d.Name))
		}
	}
	require.NotEmpty(t, want, "%s has no automatic backfill: nothing shows that pending enqueued anything", dir)

	schema := "public"
	if c.Services["demo"] != nil {
		schema = demo.Schema
	}
	exists := func(schema, table string) (ok bool) {
		require.NoError(t, pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, pgx.Identifier{schema, table}.Sanitize()).Scan(&ok))
		return ok
	}
	runsIn := func(schema string) []string {
		if !exists(schema, "backfill_runs") {
			return nil
		}
		rows, err := pool.Query(ctx, `SELECT format('%s %s %s run %s', version, name, direction, run_number) FROM `+
			pgx.Identifier{schema, "backfill_runs"}.Sanitize()+` ORDER BY version, direction, run_number`)
		require.NoError(t, err, "reading %s.backfill_runs", schema)
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err, "reading %s.backfill_runs", schema)
		return got
	}
	got := runsIn(schema)
	t.Logf("%s.backfill_runs: %q", schema, got)
	require.Equal(t, want, got, "%s.backfill_runs: every automatic backfill must be enqueued exactly once, and nothing else", schema)
	if schema != "public" {
		require.Empty(t, runsIn("public"), "public.backfill_runs: the services work in %s (PGOPTIONS); nothing may land in public", schema)
		// River's queue too: the jobs pending enqueued are in the demo's
		// schema, none in public.
		jobsIn := func(schema string) (n int) {
			if !exists(schema, "river_job") {
				return 0
			}
			require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{schema, "river_job"}.Sanitize()).Scan(&n),
				"counting %s.river_job", schema)
			return n
		}
		require.NotZero(t, jobsIn(schema), "%s.river_job is empty: pending enqueued no queue job there", schema)
		require.Zero(t, jobsIn("public"), "public.river_job: the services work in %s (PGOPTIONS); nothing may land in public", schema)
	}
	// And the workers found them: in their two seconds they did batches there.
	var done int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT coalesce(sum(rows_done), 0) FROM `+pgx.Identifier{schema, "backfill_partitions"}.Sanitize()).Scan(&done))
	require.NotZero(t, done, "%s.backfill_partitions: the workers did no batch in %s; do they see the schema the jobs were enqueued in?", schema, workerUpFor)
	t.Logf("%s.backfill_partitions: %d rows done by the workers", schema, done)
}

// runOneShot runs a one-shot command (enqueue, demo) as Compose would and
// wants exit 0.
func runOneShot(t *testing.T, bins string, s *service, words []string, dbURL, dir string) {
	cmd := commandFor(t, bins, s, words, dbURL, dir)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	started := time.Now()
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Logf("%s: %q exited (%v) after %s:\n%s", s.name, words, err, time.Since(started).Round(time.Millisecond), out.String())
		require.NoError(t, err, "service %s: %q must exit 0", s.name, words)
	case <-time.After(oneShotLimit):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("service %s: %q still running after %s:\n%s", s.name, words, oneShotLimit, out.String())
	}
}

// runWorkers starts two replicas of a worker command, as --scale worker=2
// would, checks they are still up after workerUpFor, and stops them with
// SIGTERM, which must end each with exit 0 within workerStopLimit.
func runWorkers(t *testing.T, bins string, s *service, words []string, dbURL, dir string) {
	const replicas = 2
	type proc struct {
		cmd  *exec.Cmd
		out  *syncBuffer
		done chan error
	}
	procs := make([]*proc, replicas)
	started := time.Now()
	for i := range procs {
		p := &proc{cmd: commandFor(t, bins, s, words, dbURL, dir), out: &syncBuffer{}, done: make(chan error, 1)}
		p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
		require.NoError(t, p.cmd.Start())
		go func() { p.done <- p.cmd.Wait() }()
		t.Cleanup(func() { _ = p.cmd.Process.Kill() }) // after a failure; a no-op once it exited
		procs[i] = p
	}
	t.Cleanup(func() {
		for i, p := range procs {
			t.Logf("%s replica %d output:\n%s", s.name, i+1, p.out.String())
		}
	})

	// Up: each says it started and is still running after workerUpFor.
	deadline := time.After(workerUpFor)
	for i, p := range procs {
		for !strings.Contains(p.out.String(), "worker started") {
			select {
			case err := <-p.done:
				p.done <- err
				t.Fatalf("service %s replica %d: %q exited (%v) before it started", s.name, i+1, words, err)
			case <-time.After(20 * time.Millisecond):
			}
			require.Less(t, time.Since(started), workerStopLimit, "service %s replica %d: no \"worker started\" within %s", s.name, i+1, workerStopLimit)
		}
	}
	t.Logf("%s: %d replicas of %q started within %s", s.name, replicas, words, time.Since(started).Round(time.Millisecond))
	<-deadline
	for i, p := range procs {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("service %s replica %d: %q exited (%v) within %s; a worker must stay up", s.name, i+1, words, err, workerUpFor)
		default:
		}
	}

	// Down: SIGTERM, as docker compose stop sends.
	stopping := time.Now()
	for _, p := range procs {
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	}
	limit := time.After(workerStopLimit)
	for i, p := range procs {
		select {
		case err := <-p.done:
			require.NoError(t, err, "service %s replica %d: %q must exit 0 on SIGTERM", s.name, i+1, words)
		case <-limit:
			t.Fatalf("service %s replica %d: %q still running %s after SIGTERM", s.name, i+1, words, workerStopLimit)
		}
	}
	t.Logf("%s: all replicas up for %s, exited 0 within %s of SIGTERM", s.name, stopping.Sub(started).Round(time.Millisecond), time.Since(stopping).Round(time.Millisecond))
}
