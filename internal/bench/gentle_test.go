package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/backfill/backfill/internal/faults"
	"github.com/backfill/backfill/internal/testdb"
)

// BenchmarkGentleDefault measures what a backfill with no tuning costs the
// application: pgbench (TPC-B, scale 50, 4 clients) alone, then beside a
// backfill of 5,000,000 rows run with the defaults only (its file sets
// table and key, nothing else; two workers with their default flags), in
// turns, GENTLE_RUNS times each (3), GENTLE_SECONDS each (60). Each turn
// rewrites a freshly loaded table, and both minutes start just after a
// checkpoint. It prints the median tps of both, their ratio, and the
// backfill's rows per second while pgbench ran (pgbench's tps only over the
// seconds the backfill ran, when it finished first). The goal: pgbench
// within 10% of solo while the backfill moves at least 35,000 rows/s.
//
//	go test -run XXX -bench GentleDefault -benchtime 1x -timeout 30m ./internal/bench/
//
// It runs on the server of the tests (TEST_DATABASE_URL, DATABASE_URL or
// the local one), in a database of its own that it drops at the end.
// GENTLE_HEADER adds header lines to the backfill, GENTLE_WORKER_ARGS
// flags to the workers, to compare with other settings.
func BenchmarkGentleDefault(b *testing.B) {
	seconds := envInt("GENTLE_SECONDS", 60)
	runs := envInt("GENTLE_RUNS", 3)
	rows := envInt("GENTLE_ROWS", 5_000_000)
	pgbench, err := exec.LookPath("pgbench")
	if err != nil {
		faults.Missing(b, "pgbench is not installed (Debian's postgresql-client)")
	}
	bins := faults.Build(b)
	url, pool := benchDatabase(b, "gentle_bench")
	ctx := context.Background()

	say(b, "pgbench -i -s 50 and a table of %d rows...", rows)
	if out, err := exec.Command(pgbench, "-i", "-q", "-s", "50", url).CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}

	dir := b.TempDir()
	env := []string{"DATABASE_URL=" + url, "BACKFILL_DIR=" + dir, "REDIS_URL=", "LOG_LEVEL=warn"}
	if res := faults.Run(b, time.Minute, env, bins.Enqueue, "migrate"); res.Code != 0 {
		b.Fatalf("enqueue migrate: %s", res.Output())
	}
	// The defaults only: what a new user writes.
	file := "-- table: items\n-- key: id\n" + os.Getenv("GENTLE_HEADER") +
		"UPDATE items SET price_eur_cents = price_cents * 92 / 100 WHERE id BETWEEN @first AND @last;\n"
	if err := os.WriteFile(filepath.Join(dir, "1_eur.sql"), []byte(file), 0o644); err != nil {
		b.Fatal(err)
	}
	workerArgs := fields(os.Getenv("GENTLE_WORKER_ARGS"))
	var workers []*faults.Process
	for i := range 2 {
		workers = append(workers, faults.StartWorker(b, bins, fmt.Sprintf("w%d", i+1), env, workerArgs...))
	}
	defer func() {
		for _, w := range workers {
			w.Stop(30 * time.Second)
		}
	}()

	var solo, beside, speeds []float64
	for i := range runs {
		// Every run rewrites a table as a backfill finds it: freshly
		// loaded and packed, never updated (a second pass over rows already
		// rewritten is far cheaper: HOT updates into the room the first
		// left). Both minutes start just after a checkpoint, so that both
		// pay the full-page writes that follow one.
		makeItems(b, pool, rows)
		mustExec(b, pool, `CHECKPOINT`)
		say(b, "run %d of %d: pgbench alone for %ds", i+1, runs, seconds)
		alone, _ := runPgbench(b, pgbench, url, seconds)
		solo = append(solo, alone)

		mustExec(b, pool, `CHECKPOINT`)
		args := []string{"run", "1"}
		if i > 0 {
			args = append(args, "--again")
		}
		if res := faults.Run(b, time.Minute, env, bins.Enqueue, args...); res.Code != 0 {
			b.Fatalf("enqueue %v: %s", args, res.Output())
		}
		waitRows(b, pool, 1)
		before, t0 := rowsDone(b, pool)
		say(b, "run %d of %d: pgbench beside the backfill for %ds", i+1, runs, seconds)
		tps, progress := runPgbench(b, pgbench, url, seconds)
		after, t1 := rowsDone(b, pool)
		if state, finished := runState(b, pool); state != "running" {
			// Done before pgbench: its speed is up to its end, and
			// pgbench's tps only over the seconds the backfill ran.
			say(b, "run %d: the backfill was %s %s before pgbench's end; pgbench's tps is its mean over the %s before",
				i+1, state, t1.Sub(finished).Round(time.Second), finished.Sub(t0).Round(time.Second))
			tps = progress.meanUntil(finished.Sub(t0))
			t1 = finished
		}
		// Stopped now, so that it does not run on into the next solo minute.
		faults.Run(b, time.Minute, env, bins.Enqueue, "cancel", "1")
		speed := float64(after-before) / t1.Sub(t0).Seconds()
		beside = append(beside, tps)
		speeds = append(speeds, speed)
		say(b, "run %d: solo %.0f tps, beside %.0f tps (%.3f), backfill %.0f rows/s", i+1, solo[i], tps, tps/solo[i], speed)
	}
	ms, mb, mr := median(solo), median(beside), median(speeds)
	b.ReportMetric(ms, "solo_tps")
	b.ReportMetric(mb, "beside_tps")
	b.ReportMetric(mb/ms, "tps_ratio")
	b.ReportMetric(mr, "backfill_rows/s")
	say(b, "median of %d: pgbench alone %.0f tps, beside the backfill %.0f tps (%.3f of alone); backfill %.0f rows/s (goal: >= 0.90 and >= 35000)",
		runs, ms, mb, mb/ms, mr)
	_ = ctx
}

// runPgbench runs TPC-B with 4 clients for seconds and returns its tps
// and its tps of every second (-P 1).
func runPgbench(b *testing.B, pgbench, url string, seconds int) (float64, pgbenchProgress) {
	b.Helper()
	out, err := exec.Command(pgbench, "-c", "4", "-j", "2", "-P", "1", "-T", strconv.Itoa(seconds), "-n", url).CombinedOutput()
	if err != nil {
		b.Fatalf("pgbench: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`).FindSubmatch(out)
	if m == nil {
		b.Fatalf("pgbench printed no tps:\n%s", out)
	}
	tps, _ := strconv.ParseFloat(string(m[1]), 64)
	var progress pgbenchProgress
	for _, p := range regexp.MustCompile(`progress: ([0-9.]+) s, ([0-9.]+) tps`).FindAllSubmatch(out, -1) {
		at, _ := strconv.ParseFloat(string(p[1]), 64)
		v, _ := strconv.ParseFloat(string(p[2]), 64)
		progress = append(progress, pgbenchSecond{at: time.Duration(at * float64(time.Second)), tps: v})
	}
	return tps, progress
}

// pgbenchProgress is pgbench's tps of each second (-P 1), by the time
// since it started.
type pgbenchProgress []pgbenchSecond

type pgbenchSecond struct {
	at  time.Duration
	tps float64
}

// meanUntil is the mean tps of the seconds that ended by d (all of them
// when none did).
func (p pgbenchProgress) meanUntil(d time.Duration) float64 {
	var sum float64
	n := 0
	for _, s := range p {
		if s.at <= d {
			sum += s.tps
			n++
		}
	}
	if n == 0 {
		for _, s := range p {
			sum += s.tps
		}
		n = max(len(p), 1)
	}
	return sum / float64(n)
}

// benchDatabase creates a fresh database on the tests' server, dropped when
// the benchmark ends, and returns its URL and a pool on it.
func benchDatabase(b *testing.B, name string) (string, *pgxpool.Pool) {
	b.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, testdb.ServerURL())
	if err != nil {
		b.Fatalf("connecting to the server: %v", err)
	}
	defer admin.Close(ctx)
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
		b.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), testdb.ServerURL())
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)")
			c.Close(context.Background())
		}
	})
	url := testdb.WithDatabase(name)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return url, pool
}

// makeItems (re)creates the table the backfill rewrites.
func makeItems(b *testing.B, pool *pgxpool.Pool, rows int) {
	b.Helper()
	mustExec(b, pool, `DROP TABLE IF EXISTS items;
CREATE TABLE items (id bigint PRIMARY KEY, price_cents bigint NOT NULL, price_eur_cents bigint);
INSERT INTO items (id, price_cents) SELECT g, g % 10000 FROM generate_series(1, `+strconv.Itoa(rows)+`) g`)
	mustExec(b, pool, `VACUUM ANALYZE items`)
}

func mustExec(b *testing.B, pool *pgxpool.Pool, sql string) {
	b.Helper()
	if _, err := pool.Exec(context.Background(), sql); err != nil {
		b.Fatalf("%v\n%s", err, sql)
	}
}

// rowsDone reads the latest run's rows done, and when.
func rowsDone(b *testing.B, pool *pgxpool.Pool) (int64, time.Time) {
	b.Helper()
	var n int64
	err := pool.QueryRow(context.Background(), `SELECT coalesce(sum(rows_done), 0)::bigint FROM backfill.backfill_partitions
WHERE run_id = (SELECT max(id) FROM backfill.backfill_runs)`).Scan(&n)
	if err != nil {
		b.Fatal(err)
	}
	return n, time.Now()
}

// runState reads the latest run's state, and when it finished (now when
// it did not).
func runState(b *testing.B, pool *pgxpool.Pool) (string, time.Time) {
	b.Helper()
	var (
		s        string
		finished time.Time
	)
	if err := pool.QueryRow(context.Background(), `SELECT state, coalesce(finished_at, now()) FROM backfill.backfill_runs ORDER BY id DESC LIMIT 1`).Scan(&s, &finished); err != nil {
		b.Fatal(err)
	}
	return s, finished
}

// waitRows waits until the latest run has done at least n rows.
func waitRows(b *testing.B, pool *pgxpool.Pool, n int64) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if done, _ := rowsDone(b, pool); done >= n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatal("the backfill did not start within a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func fields(s string) []string {
	var out []string
	for _, f := range regexp.MustCompile(`\S+`).FindAllString(s, -1) {
		out = append(out, f)
	}
	return out
}

// say prints a line of the benchmark's progress or result on stdout too:
// go test keeps only the first lines of a benchmark's log.
func say(b *testing.B, format string, args ...any) {
	b.Helper()
	b.Logf(format, args...)
	fmt.Printf("GENTLE "+format+"\n", args...)
}
