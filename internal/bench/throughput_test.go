package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/backfill/backfill/internal/faults"
	"github.com/backfill/backfill/internal/testdb"
)

// BenchmarkThroughputBinaries measures how fast the engine rewrites a column
// through the real binaries, against a hand-written pgx keyset loop in this
// process that does the same work and commits a checkpoint row with every
// batch (issue 11). For each case of the matrix, THROUGHPUT_RUNS times (3),
// one turn of the loop and one of the engine, interleaved (the loop first in
// odd runs, the engine first in even ones), each in a database of its own
// that is created for the turn, on a table of THROUGHPUT_ROWS rows
// (2,000,000) freshly loaded, packed, vacuumed and analysed, with its
// autovacuum off, after a CHECKPOINT, and once the machine is quiet (see
// THROUGHPUT_QUIET).
//
//   - The loop, on one connection: per transaction, the next batch's first
//     and last key (SELECT id ... WHERE id > cursor ORDER BY id LIMIT batch),
//     the UPDATE over them, the checkpoint row's UPDATE, commit. Its rows/s
//     is over its whole time; a batch's latency is from begin to commit.
//   - The engine: a backfill file (the same UPDATE; batch, partitions,
//     duty_cycle off, no rate), "enqueue migrate", W worker processes
//     ("worker --concurrency C", LOG_LEVEL=debug, LOG_FORMAT=json), then
//     "enqueue run 1". Its rows/s is from the run's started_at to its
//     finished_at in backfill_runs; a batch's latency is the "duration" of
//     the workers' "batch done" lines (begin to commit); each worker's
//     resident memory (VmRSS) is sampled every second from a second after
//     the run was enqueued until it finished.
//
// Cases are named b<batch>-p<partitions>-w<workers>[x<concurrency>] (the
// concurrency defaults to partitions/workers): b1000-p1-w1, b1000-p8-w1x4
// (one worker x4), b1000-p8-w2x4 (a second worker joins it: twice the
// batches in flight), and the same at batch 5000. It prints a line per turn as it goes and at the end one table of
// medians over the runs: both speeds, their ratio (the median of each run's
// ratio, measured minutes apart at most), both batch latencies p50/p99, the
// engine's p99/p50, the time between batches (the speed's time, for every
// batch at once, less the batches' own, per batch: what costs time outside
// the batches' transactions), the CPU time per batch of the clients (the
// loop's process; the workers) and of the server's processes that worked for
// them, not the benchmark's own polling for the run's end (from /proc, which
// counts in ticks of 10 ms: rough over a few hundred batches, and only when
// the server runs on this machine), and the
// workers' memory: first, highest and last sample, and how much it grew
// once warm (the highest sample from a tenth of the run on, 10 s at the
// least, over the sample there; the table shows the most of any run); and
// reports each case's ratio and p99/p50 as metrics.
// Each turn checks that every row was rewritten.
//
//	go test -run '^$' -bench ThroughputBinaries -benchtime 1x -timeout 60m ./internal/bench/
//	scripts/bench-throughput    # the same, see it for the environment
//
// THROUGHPUT_ROWS (2000000), THROUGHPUT_RUNS (3), THROUGHPUT_CASES (all
// six; a comma- or space-separated subset, e.g. "b1000-p1-w1", or other
// shapes like "b2000-p4-w2x1"), THROUGHPUT_WORKER_ARGS (flags added to
// every worker, to compare settings) and THROUGHPUT_QUIET (25: a turn waits,
// a minute at most, until the CPUs were at most this % busy over half a
// second; 100 does not wait). Each turn reports how much of the machine's
// CPU time other processes used meanwhile (the table, the most of any turn
// of a case): a turn that shared the machine is not comparable, and a pair
// of turns of which either shared more than THROUGHPUT_MAX_OTHERS % (20;
// 100 never) is measured again, twice at most. A quick check:
// THROUGHPUT_ROWS=200000 THROUGHPUT_RUNS=1 THROUGHPUT_CASES=b1000-p1-w1.
// It runs on the server of the tests (TEST_DATABASE_URL, DATABASE_URL or
// the local one), in a database of its own, throughput_bench_<its pid>,
// dropped at the end; Redis is not used (no rate).
func BenchmarkThroughputBinaries(b *testing.B) {
	rows := envInt("THROUGHPUT_ROWS", 2_000_000)
	runs := envInt("THROUGHPUT_RUNS", 3)
	cases, err := parseThroughputCases(cmpOr(os.Getenv("THROUGHPUT_CASES"), defaultThroughputCases))
	if err != nil {
		b.Fatal(err)
	}
	workerArgs := fields(os.Getenv("THROUGHPUT_WORKER_ARGS"))
	maxOthers := float64(envInt("THROUGHPUT_MAX_OTHERS", 20))
	began := time.Now()
	bins := faults.Build(b)
	b.Cleanup(func() { dropThroughputDatabases(throughputDB) })

	tsay(b, "%d rows, %d runs, cases %s; %s; binaries built from %s", rows, runs, caseNames(cases), machine(b), tree())
	results := make([]throughputResult, len(cases))
	for i := range results {
		results[i].loopWaits, results[i].engineWaits = waitCounts{}, waitCounts{}
	}
	for run := range runs {
		for i, c := range cases {
			var loop loopTurn
			var engine engineTurn
			measureLoop := func() {
				loop = runLoop(b, rows, c.batch)
				tsay(b, "%s run %d/%d: loop   %s rows/s (%s), batch p50 %s p99 %s ms, %s ms between batches, CPU per batch %s ms client + %s ms server, CPUs %.0f%% busy, session waiting %.0f%% (%s); others used %.0f%% of the CPUs",
					c.name, run+1, runs, kilo(loop.rate), loop.took.Round(time.Millisecond), ms(loop.p50), ms(loop.p99), ms(loop.gap),
					ms(loop.cpuPerBatch[0]), ms(loop.cpuPerBatch[1]), loop.busy, loop.waits.waiting(), loop.waits.top(3), loop.others)
			}
			measureEngine := func() {
				engine = runEngine(b, bins, rows, c, workerArgs, nil)
				tsay(b, "%s run %d/%d: engine %s rows/s (%s), batch p50 %s p99 %s ms, %s ms between batches, CPU per batch %s ms client + %s ms server, CPUs %.0f%% busy, sessions waiting %.0f%% (%s), %d batches, worker RSS %.0f/%.0f/%.0f MB (+%.0f%% once warm); others used %.0f%% of the CPUs",
					c.name, run+1, runs, kilo(engine.rate), engine.took.Round(time.Millisecond), ms(engine.p50), ms(engine.p99),
					ms(engine.gap), ms(engine.cpuPerBatch[0]), ms(engine.cpuPerBatch[1]), engine.busy,
					engine.waits.waiting(), engine.waits.top(3), engine.batches,
					engine.rssFirst, engine.rssMax, engine.rssLast, engine.rssGrowth, engine.others)
			}
			for attempt := 1; ; attempt++ {
				if run%2 == 0 {
					measureLoop()
					measureEngine()
				} else {
					measureEngine()
					measureLoop()
				}
				busiest := max(loop.others, engine.others)
				if busiest <= maxOthers || attempt > throughputRepeats {
					break
				}
				tsay(b, "%s run %d/%d: others used up to %.0f%% of the CPUs (THROUGHPUT_MAX_OTHERS %.0f%%): measuring both again",
					c.name, run+1, runs, busiest, maxOthers)
			}
			r := &results[i]
			r.loopRate = append(r.loopRate, loop.rate)
			r.engineRate = append(r.engineRate, engine.rate)
			r.ratio = append(r.ratio, engine.rate/loop.rate)
			r.loopP50 = append(r.loopP50, loop.p50)
			r.loopP99 = append(r.loopP99, loop.p99)
			r.engineP50 = append(r.engineP50, engine.p50)
			r.engineP99 = append(r.engineP99, engine.p99)
			r.tail = append(r.tail, engine.p99/engine.p50)
			r.loopGap = append(r.loopGap, loop.gap)
			r.engineGap = append(r.engineGap, engine.gap)
			r.loopCPU = append(r.loopCPU, loop.cpuPerBatch)
			r.engineCPU = append(r.engineCPU, engine.cpuPerBatch)
			r.loopBusy = append(r.loopBusy, loop.busy)
			r.engineBusy = append(r.engineBusy, engine.busy)
			r.loopWaiting = append(r.loopWaiting, loop.waits.waiting())
			r.engineWaiting = append(r.engineWaiting, engine.waits.waiting())
			r.loopWaits.add(loop.waits)
			r.engineWaits.add(engine.waits)
			r.rssFirst = append(r.rssFirst, engine.rssFirst)
			r.rssMax = append(r.rssMax, engine.rssMax)
			r.rssLast = append(r.rssLast, engine.rssLast)
			r.rssGrowth = append(r.rssGrowth, engine.rssGrowth)
			r.others = append(r.others, loop.others, engine.others)
			tsay(b, "%s run %d/%d: engine/loop %.2f", c.name, run+1, runs, engine.rate/loop.rate)
		}
	}

	table := throughputTable(cases, results, rows, runs)
	fmt.Print(table)
	fmt.Print(waitsByCase(cases, results))
	fmt.Print(moreWorkers(cases, results))
	for i, c := range cases {
		b.ReportMetric(median(results[i].ratio), c.name+"_engine/loop")
		b.ReportMetric(median(results[i].tail), c.name+"_p99/p50")
	}
	tsay(b, "took %s", time.Since(began).Round(time.Second))
}

// moreWorkers compares the engine's speed in cases that differ only in
// their number of workers, each with the same concurrency (more batches in
// flight) or with the same batches in flight in all (spread over more
// processes): for each pair, the median over the runs of more workers'
// rows/s over fewer's, both measured in the same run.
func moreWorkers(cases []throughputCase, results []throughputResult) string {
	var sb strings.Builder
	for i, few := range cases {
		for j, more := range cases {
			if few.batch != more.batch || few.partitions != more.partitions || more.workers <= few.workers {
				continue
			}
			sameInFlight := few.workers*few.concurrency == more.workers*more.concurrency
			if few.concurrency != more.concurrency && !sameInFlight {
				continue
			}
			var each []float64
			var shown []string
			for k := range min(len(results[i].engineRate), len(results[j].engineRate)) {
				each = append(each, results[j].engineRate[k]/results[i].engineRate[k])
				shown = append(shown, fmt.Sprintf("%.2f", each[k]))
			}
			what := "more batches in flight"
			if sameInFlight {
				what = "as many batches in flight"
			}
			fmt.Fprintf(&sb, "\nMore workers, %s, batch %d, %d partitions: %dx%d / %dx%d engine rows/s %.2f (runs %s)",
				what, few.batch, few.partitions, more.workers, more.concurrency, few.workers, few.concurrency, median(each), strings.Join(shown, " "))
		}
	}
	if sb.Len() > 0 {
		sb.WriteString("\n")
	}
	return sb.String()
}

// throughputRepeats is how many times at most a pair of turns is measured
// again when other processes used more than THROUGHPUT_MAX_OTHERS % of
// the CPUs during either.
const throughputRepeats = 2

const defaultThroughputCases = "b1000-p1-w1,b1000-p8-w1x4,b1000-p8-w2x2,b1000-p8-w2x4,b5000-p1-w1,b5000-p8-w1x4,b5000-p8-w2x2,b5000-p8-w2x4"

// throughputCase is one shape of the engine: batch size, partitions,
// worker processes and each one's concurrency.
type throughputCase struct {
	name                                    string
	batch, partitions, workers, concurrency int
}

func parseThroughputCases(s string) ([]throughputCase, error) {
	re := regexp.MustCompile(`^b(\d+)-p(\d+)-w(\d+)(?:x(\d+))?$`)
	var out []throughputCase
	for _, name := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		m := re.FindStringSubmatch(name)
		if m == nil {
			return nil, fmt.Errorf("THROUGHPUT_CASES: %q is not b<batch>-p<partitions>-w<workers>[x<concurrency>], e.g. b1000-p8-w2x4", name)
		}
		c := throughputCase{name: name}
		c.batch, _ = strconv.Atoi(m[1])
		c.partitions, _ = strconv.Atoi(m[2])
		c.workers, _ = strconv.Atoi(m[3])
		c.concurrency = (c.partitions + c.workers - 1) / max(c.workers, 1)
		if m[4] != "" {
			c.concurrency, _ = strconv.Atoi(m[4])
		}
		if c.batch < 1 || c.partitions < 1 || c.workers < 1 || c.concurrency < 1 {
			return nil, fmt.Errorf("THROUGHPUT_CASES: %q: every number must be at least 1", name)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("THROUGHPUT_CASES names no case")
	}
	return out, nil
}

// cpuCell is the medians of the clients' and the server's CPU per batch.
func cpuCell(runs [][2]float64) string {
	var c, s []float64
	for _, r := range runs {
		c, s = append(c, r[0]), append(s, r[1])
	}
	return fmt.Sprintf("%.2f+%.2f", median(c), median(s))
}

func caseNames(cases []throughputCase) string {
	var names []string
	for _, c := range cases {
		names = append(names, fmt.Sprintf("%s (workers %dx%d)", c.name, c.workers, c.concurrency))
	}
	return strings.Join(names, ", ")
}

// throughputResult is one case's figures, one per run.
type throughputResult struct {
	loopRate, engineRate, ratio []float64
	loopP50, loopP99            []float64    // ms
	engineP50, engineP99, tail  []float64    // ms; tail is p99/p50
	loopGap, engineGap          []float64    // ms between batches
	loopCPU, engineCPU          [][2]float64 // ms per batch: client, server
	loopBusy, engineBusy        []float64    // % of the CPUs the turn used
	loopWaiting, engineWaiting  []float64    // % of the sessions' active time spent waiting
	loopWaits, engineWaits      waitCounts   // what the sessions did, over all runs
	rssFirst, rssMax, rssLast   []float64    // MB
	rssGrowth                   []float64    // %
	others                      []float64    // % of the CPUs others used during each turn
}

func throughputTable(cases []throughputCase, results []throughputResult, rows, runs int) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nThroughput through the binaries: %d rows, medians of %d runs (ratio: the median of each run's engine/loop;\n"+
		"between batches: the time, per batch, outside the batches' transactions; with several partitions, per partition,\n"+
		"counting the time a partition's slot is idle once it is done; CPU: the CPU time per batch of the client (the loop's process,\n"+
		"the workers) and of the server's processes that worked for it (its sessions, checkpointer and writers), not the\n"+
		"benchmark's own polling for the run's end; CPUs busy: the share of the machine's CPU time the turn's clients and server used;\n"+
		"sessions waiting: the share of the time the turn's sessions ran a statement that they waited for something else than a CPU\n"+
		"(a lock, the WAL, a disk), sampled in pg_stat_activity every %s on average;\n"+
		"others' CPU: the most CPU time, %% of the machine's, that processes other than the benchmark's used during any of the case's turns)\n\n", rows, runs, waitInterval)
	head := []string{"case", "workers", "loop rows/s", "engine rows/s", "ratio", "runs' ratios", "loop p50/p99 ms", "engine p50/p99 ms", "engine p99/p50", "between batches ms loop/engine", "CPU ms/batch client+server loop/engine", "CPUs busy % loop/engine", "sessions waiting % loop/engine", "worker RSS first/max/last MB", "RSS growth %", "others' CPU %"}
	lines := [][]string{head}
	for i, c := range cases {
		r := results[i]
		var each []string
		for _, x := range r.ratio {
			each = append(each, fmt.Sprintf("%.2f", x))
		}
		lines = append(lines, []string{
			c.name,
			fmt.Sprintf("%dx%d", c.workers, c.concurrency),
			kilo(median(r.loopRate)),
			kilo(median(r.engineRate)),
			fmt.Sprintf("%.2f", median(r.ratio)),
			strings.Join(each, " "),
			ms(median(r.loopP50)) + " / " + ms(median(r.loopP99)),
			ms(median(r.engineP50)) + " / " + ms(median(r.engineP99)),
			fmt.Sprintf("%.2f", median(r.tail)),
			ms(median(r.loopGap)) + " / " + ms(median(r.engineGap)),
			cpuCell(r.loopCPU) + " / " + cpuCell(r.engineCPU),
			fmt.Sprintf("%.0f / %.0f", median(r.loopBusy), median(r.engineBusy)),
			fmt.Sprintf("%.0f / %.0f", median(r.loopWaiting), median(r.engineWaiting)),
			fmt.Sprintf("%.0f / %.0f / %.0f", median(r.rssFirst), median(r.rssMax), median(r.rssLast)),
			fmt.Sprintf("%.0f", slices.Max(r.rssGrowth)),
			fmt.Sprintf("%.0f", slices.Max(r.others)),
		})
	}
	widths := make([]int, len(head))
	for _, l := range lines {
		for j, cell := range l {
			widths[j] = max(widths[j], len(cell))
		}
	}
	for k, l := range lines {
		sb.WriteString("|")
		for j, cell := range l {
			fmt.Fprintf(&sb, " %-*s |", widths[j], cell)
		}
		sb.WriteString("\n")
		if k == 0 {
			sb.WriteString("|")
			for _, w := range widths {
				sb.WriteString(strings.Repeat("-", w+2) + "|")
			}
			sb.WriteString("\n")
		}
	}
	sb.WriteString("\n")
	return sb.String()
}

// throughputDB is the turns' database, one per benchmark process so that
// two runs at once on one server do not drop each other's; side by side,
// the loop's and the engine's are two, named after it.
var throughputDB = "throughput_bench_" + strconv.Itoa(os.Getpid())

// throughputDatabase (re)creates the database name of one turn with a
// fresh items table of rows rows: loaded, packed, vacuumed and analysed,
// its autovacuum off (it would start in some turns and not in others), and
// returns its URL and a pool on it. The caller closes the pool.
func throughputDatabase(b *testing.B, name string, rows int) (string, *pgxpool.Pool) {
	b.Helper()
	ctx := context.Background()
	dropThroughputDatabases(name)
	admin, err := pgx.Connect(ctx, testdb.ServerURL())
	if err != nil {
		b.Fatalf("connecting to the server: %v", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		b.Fatal(err)
	}
	url := testdb.WithDatabase(name)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		b.Fatal(err)
	}
	// One session, so that the CPU accounts can tell the benchmark's own
	// (loading, polling for the run's end) from the work it measures.
	cfg.MaxConns = 1
	cfg.ConnConfig.RuntimeParams["application_name"] = benchSession
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	makeItems(b, pool, rows)
	mustExec(b, pool, `ALTER TABLE items SET (autovacuum_enabled = off)`)
	return url, pool
}

func dropThroughputDatabases(names ...string) {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, testdb.ServerURL())
	if err != nil {
		return
	}
	defer c.Close(ctx)
	for _, name := range names {
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
}

// checkRewritten fails the benchmark unless every row of items was
// rewritten.
func checkRewritten(b *testing.B, pool *pgxpool.Pool, who string) {
	b.Helper()
	var wrong int64
	if err := pool.QueryRow(context.Background(),
		`SELECT count(*) FROM items WHERE price_eur_cents IS DISTINCT FROM price_cents * 92 / 100`).Scan(&wrong); err != nil {
		b.Fatal(err)
	}
	if wrong > 0 {
		b.Fatalf("%s left %d rows not rewritten", who, wrong)
	}
}

type loopTurn struct {
	rate     float64
	took     time.Duration
	p50, p99 float64 // ms
	gap      float64 // ms between batches, on average
	others   float64 // % of the machine's CPU time others used meanwhile
	busy     float64 // % of the machine's CPU time the turn used
	// cpuPerBatch is the CPU time per batch, ms, of the client and of the
	// server's processes that worked for it.
	cpuPerBatch [2]float64
	waits       waitCounts // of the loop's session
}

// runLoop is the baseline: one connection, per transaction the next batch's
// keys, the UPDATE, the checkpoint row, commit.
func runLoop(b *testing.B, rows, batch int) loopTurn {
	b.Helper()
	ctx := context.Background()
	url, pool := throughputDatabase(b, throughputDB, rows)
	defer pool.Close()
	conn := prepareLoop(b, url, pool)
	defer conn.Close(ctx)
	waitQuiet(b)
	account := startAccount(b, pool)
	sampler := sampleWaits(b, url)

	started := time.Now()
	lat, done, err := keysetLoop(ctx, conn, batch, nil)
	if err != nil {
		b.Fatal(err)
	}
	took := time.Since(started)
	waits := sampler.finish(b)
	cpu := account.use(b, pool)
	if done != int64(rows) {
		b.Fatalf("the loop rewrote %d rows of %d", done, rows)
	}
	checkRewritten(b, pool, "the loop")
	return loopTurn{rate: float64(done) / took.Seconds(), took: took, p50: percentileMS(lat, 0.50), p99: percentileMS(lat, 0.99), gap: gapMS(took, 1, lat),
		others: cpu.others, busy: cpu.busy, cpuPerBatch: perBatchMS(cpu, len(lat)), waits: waits}
}

// prepareLoop creates the loop's checkpoint row, checkpoints the server and
// connects the loop's one connection.
func prepareLoop(b *testing.B, url string, pool *pgxpool.Pool) *pgx.Conn {
	b.Helper()
	mustExec(b, pool, `CREATE TABLE loop_checkpoint (id int PRIMARY KEY, cursor bigint NOT NULL, rows bigint NOT NULL);
INSERT INTO loop_checkpoint VALUES (1, 0, 0)`)
	mustExec(b, pool, `CHECKPOINT`)
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		b.Fatal(err)
	}
	return conn
}

// keysetLoop rewrites items on conn, batch after batch, and returns each
// batch's latency and the rows rewritten; done, when set, hears of each
// batch as it commits, with the rows rewritten so far.
func keysetLoop(ctx context.Context, conn *pgx.Conn, batch int, done func(time.Time, int64)) ([]time.Duration, int64, error) {
	var (
		cursor, rows int64
		lat          []time.Duration
	)
	for {
		t0 := time.Now()
		tx, err := conn.Begin(ctx)
		if err != nil {
			return nil, 0, err
		}
		var first, last *int64
		if err := tx.QueryRow(ctx, `SELECT min(id), max(id) FROM (SELECT id FROM items WHERE id > $1 ORDER BY id LIMIT $2) s`,
			cursor, batch).Scan(&first, &last); err != nil {
			return nil, 0, err
		}
		if last == nil {
			return lat, rows, tx.Rollback(ctx)
		}
		tag, err := tx.Exec(ctx, `UPDATE items SET price_eur_cents = price_cents * 92 / 100 WHERE id BETWEEN $1 AND $2`, *first, *last)
		if err != nil {
			return nil, 0, err
		}
		if _, err := tx.Exec(ctx, `UPDATE loop_checkpoint SET cursor = $1, rows = rows + $2 WHERE id = 1`, *last, tag.RowsAffected()); err != nil {
			return nil, 0, err
		}
		if err := tx.Commit(ctx); err != nil {
			return nil, 0, err
		}
		lat = append(lat, time.Since(t0))
		cursor = *last
		rows += tag.RowsAffected()
		if done != nil {
			done(time.Now(), rows)
		}
	}
}

type engineTurn struct {
	rate                      float64
	took                      time.Duration
	p50, p99                  float64 // ms
	gap                       float64 // ms between a partition's batches, on average
	batches                   int
	rssFirst, rssMax, rssLast float64 // MB, of the worker with the highest peak
	// rssGrowth is how much that worker's memory grew once warm: its
	// highest sample from a tenth of the run (10 s at the least) on over
	// the sample there, in % (0 for a run shorter than that).
	rssGrowth   float64
	others      float64    // % of the machine's CPU time others used meanwhile
	busy        float64    // % of the machine's CPU time the turn used
	cpuPerBatch [2]float64 // as loopTurn's
	waits       waitCounts // of the workers' sessions
	// startedAt and finishedAt are the run's; progress is the rows done as
	// the batches committed.
	startedAt, finishedAt time.Time
	progress              []rowsAt
}

// runEngine runs the case's backfill through the binaries in a fresh
// database and returns its speed from the run's own start to its finish.
// beforeRun, when set, is called just before the run is enqueued, once
// the workers are up and the machine is quiet.
func runEngine(b *testing.B, bins faults.Binaries, rows int, c throughputCase, workerArgs []string, beforeRun func()) engineTurn {
	b.Helper()
	ctx := context.Background()
	url, pool := throughputDatabase(b, throughputDB, rows)
	defer pool.Close()

	dir := b.TempDir()
	file := fmt.Sprintf("-- table: items\n-- key: id\n-- batch: %d\n-- partitions: %d\n-- duty_cycle: off\n"+
		"UPDATE items SET price_eur_cents = price_cents * 92 / 100 WHERE id BETWEEN @first AND @last;\n", c.batch, c.partitions)
	if err := os.WriteFile(filepath.Join(dir, "1_eur.sql"), []byte(file), 0o644); err != nil {
		b.Fatal(err)
	}
	env := []string{"DATABASE_URL=" + url, "BACKFILL_DIR=" + dir, "REDIS_URL=", "LOG_FORMAT=json"}
	if res := faults.Run(b, time.Minute, append(env, "LOG_LEVEL=warn"), bins.Enqueue, "migrate"); res.Code != 0 {
		b.Fatalf("enqueue migrate: %s", res.Output())
	}
	mustExec(b, pool, `CHECKPOINT`)

	env = append(env, "LOG_LEVEL=debug")
	args := append([]string{"--concurrency", strconv.Itoa(c.concurrency)}, workerArgs...)
	var workers []*faults.Process
	for i := range c.workers {
		workers = append(workers, faults.StartWorker(b, bins, fmt.Sprintf("w%d", i+1), env, args...))
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		for _, w := range workers {
			if _, ok := w.Stop(30 * time.Second); !ok {
				b.Errorf("worker %s did not stop within 30s", w.Name)
			}
		}
	}
	defer stop()
	for _, w := range workers {
		waitStarted(b, w)
	}
	waitQuiet(b)
	account := startAccount(b, pool, workers...)

	if beforeRun != nil {
		beforeRun()
	}
	if res := faults.Run(b, time.Minute, append(env, "LOG_LEVEL=warn"), bins.Enqueue, "run", "1"); res.Code != 0 {
		b.Fatalf("enqueue run 1: %s", res.Output())
	}
	sampler := sampleRSS(workers)
	waitSampler := sampleWaits(b, url)
	state, startedAt, finishedAt := waitFinished(b, pool, workers, rows)
	waits := waitSampler.finish(b)
	cpu := account.use(b, pool, workers...)
	rss := sampler.stop()
	if state != "completed" {
		b.Fatalf("the run ended %s", state)
	}
	var done int64
	if err := pool.QueryRow(ctx, `SELECT coalesce(sum(rows_done), 0)::bigint FROM backfill.backfill_partitions
WHERE run_id = (SELECT max(id) FROM backfill.backfill_runs)`).Scan(&done); err != nil {
		b.Fatal(err)
	}
	if done != int64(rows) {
		b.Fatalf("the run did %d rows of %d", done, rows)
	}
	stop()
	checkRewritten(b, pool, "the engine")

	lat, progress := batchDurations(b, workers)
	if logged := progress[len(progress)-1].rows; logged != int64(rows) {
		b.Logf("note: the workers' batch done lines add up to %d rows of %d", logged, rows)
	}
	took := finishedAt.Sub(startedAt)
	t := engineTurn{rate: float64(done) / took.Seconds(), took: took, batches: len(lat),
		startedAt: startedAt, finishedAt: finishedAt, progress: progress,
		others: cpu.others, busy: cpu.busy, cpuPerBatch: perBatchMS(cpu, len(lat)), waits: waits,
		gap: gapMS(took, min(c.partitions, c.workers*c.concurrency), lat),
		p50: percentileMS(lat, 0.50), p99: percentileMS(lat, 0.99)}
	for _, s := range rss {
		if len(s) == 0 {
			continue
		}
		if peak := slices.Max(s); peak >= t.rssMax {
			t.rssFirst, t.rssMax, t.rssLast = s[0], peak, s[len(s)-1]
			// Samples are a second apart: from a tenth of the run, or 10 s
			// in when that is later (warming up: statements prepared,
			// buffers grown).
			if from := max(len(s)/10, 10); from < len(s) {
				warm := s[from:]
				t.rssGrowth = (slices.Max(warm)/warm[0] - 1) * 100
			}
		}
	}
	return t
}

// waitStarted waits for the worker's "worker started" line.
func waitStarted(b *testing.B, w *faults.Process) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, l := range w.Stderr.Lines() {
			if strings.Contains(l.Text, `"msg":"worker started"`) {
				return
			}
		}
		if !w.Running() {
			b.Fatalf("worker %s exited at start:\n%s", w.Name, w.Stderr.String())
		}
		if time.Now().After(deadline) {
			b.Fatalf("worker %s did not start within 30s:\n%s", w.Name, w.Stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFinished polls the run until it is no longer pending or running,
// and returns its state, started_at and finished_at.
func waitFinished(b *testing.B, pool *pgxpool.Pool, workers []*faults.Process, rows int) (string, time.Time, time.Time) {
	b.Helper()
	// Generous: 2,000 rows/s at the least.
	began := time.Now()
	deadline := began.Add(2*time.Minute + time.Duration(rows/2000)*time.Second)
	for {
		var (
			state             string
			started, finished *time.Time
		)
		if err := pool.QueryRow(context.Background(),
			`SELECT state, started_at, finished_at FROM backfill.backfill_runs ORDER BY id DESC LIMIT 1`).Scan(&state, &started, &finished); err != nil {
			b.Fatal(err)
		}
		if state != "pending" && state != "running" && finished != nil {
			if started == nil {
				b.Fatalf("the run is %s without a start time", state)
			}
			return state, *started, *finished
		}
		for _, w := range workers {
			if !w.Running() {
				b.Fatalf("worker %s exited during the run:\n%s", w.Name, w.Stderr.String())
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("the run is still %s after %s", state, time.Since(began).Round(time.Second))
		}
		// The run's speed comes from its own timestamps: polling more
		// often would only take CPU from the turn.
		time.Sleep(100 * time.Millisecond)
	}
}

// batchDurations reads the workers' "batch done" lines: each batch's
// duration (slog's JSON writes a duration in nanoseconds) and the rows done
// as the batches committed, in the order of their lines' times.
func batchDurations(b *testing.B, workers []*faults.Process) ([]time.Duration, []rowsAt) {
	b.Helper()
	var (
		out      []time.Duration
		progress []rowsAt
	)
	for _, w := range workers {
		for _, l := range w.Stderr.Lines() {
			if !strings.Contains(l.Text, `"batch done"`) {
				continue
			}
			var rec struct {
				Time     time.Time `json:"time"`
				Msg      string    `json:"msg"`
				Duration *int64    `json:"duration"`
				Rows     int64     `json:"rows"`
			}
			if err := json.Unmarshal([]byte(l.Text), &rec); err != nil || rec.Msg != "batch done" {
				continue
			}
			if rec.Duration == nil {
				b.Fatalf("a batch done line without a duration: %s", l.Text)
			}
			out = append(out, time.Duration(*rec.Duration))
			progress = append(progress, rowsAt{at: rec.Time, rows: rec.Rows})
		}
	}
	if len(out) == 0 {
		b.Fatalf("the workers logged no batch done line (LOG_LEVEL=debug, LOG_FORMAT=json); worker w1:\n%s", workers[0].Stderr.String())
	}
	slices.SortStableFunc(progress, func(x, y rowsAt) int { return x.at.Compare(y.at) })
	for i := 1; i < len(progress); i++ {
		progress[i].rows += progress[i-1].rows
	}
	return out, progress
}

// rowsAt is how many rows were done at a time.
type rowsAt struct {
	at   time.Time
	rows int64
}

// rowsBy is the rows done by t, of progress in the order of time.
func rowsBy(progress []rowsAt, t time.Time) int64 {
	var n int64
	for _, p := range progress {
		if p.at.After(t) {
			break
		}
		n = p.rows
	}
	return n
}

// rssSampler reads each worker's VmRSS every second.
type rssSampler struct {
	done    chan struct{}
	wg      sync.WaitGroup
	samples [][]float64 // MB, per worker
}

func sampleRSS(workers []*faults.Process) *rssSampler {
	s := &rssSampler{done: make(chan struct{}), samples: make([][]float64, len(workers))}
	take := func() {
		for i, w := range workers {
			if mb, ok := vmRSS(w.Cmd.Process.Pid); ok {
				s.samples[i] = append(s.samples[i], mb)
			}
		}
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				take()
			case <-s.done:
				take() // the last one, as the run finished
				return
			}
		}
	}()
	return s
}

func (s *rssSampler) stop() [][]float64 {
	close(s.done)
	s.wg.Wait()
	return s.samples
}

// vmRSS is a process's resident memory in MB, from /proc.
func vmRSS(pid int) (float64, bool) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024, err == nil
		}
	}
	return 0, false
}

// perBatchMS is the clients' and the server's CPU time per batch, in ms.
func perBatchMS(u cpuUse, batches int) [2]float64 {
	n := float64(max(batches, 1))
	return [2]float64{1000 * u.client / n, 1000 * u.server / n}
}

// gapMS is the time, in ms and on average, between the end of a batch
// and the start of the next, when slots batches at a time took took: what
// is not in the batches' transactions.
func gapMS(took time.Duration, slots int, lat []time.Duration) float64 {
	var in time.Duration
	for _, d := range lat {
		in += d
	}
	return float64(time.Duration(slots)*took-in) / float64(len(lat)) / float64(time.Millisecond)
}

// percentileMS is the nearest-rank percentile p of ds, in milliseconds.
func percentileMS(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return math.NaN()
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return float64(s[min(max(i, 0), len(s)-1)]) / float64(time.Millisecond)
}

// machine describes where the benchmark runs: CPUs, their model, and the
// server's version.
func machine(b *testing.B) string {
	b.Helper()
	model := "?"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := regexp.MustCompile(`(?m)^model name\s*:\s*(.+)$`).FindSubmatch(data); m != nil {
			model = string(m[1])
		}
	}
	version := "?"
	ctx := context.Background()
	if c, err := pgx.Connect(ctx, testdb.ServerURL()); err == nil {
		_ = c.QueryRow(ctx, `SELECT current_setting('server_version') || ', shared_buffers ' || current_setting('shared_buffers')`).Scan(&version)
		c.Close(ctx)
	}
	return fmt.Sprintf("%d CPUs (%s), PostgreSQL %s", runtime.NumCPU(), model, version)
}

// cpuAccount is what the machine's CPUs, and the processes of a turn, had
// used at the turn's start: the clients (the loop's process, or the
// workers), the server's processes that work for them (their sessions on
// the turn's database, its checkpointer and writers), and the benchmark's
// own (this process while it only watches the workers, with its children,
// the enqueue runs, and its pool's session, which polls for the run's end).
type cpuAccount struct {
	busy, total float64
	ticks       map[int]float64
}

// cpuUse is what a turn used: others is the share of the machine's CPU
// time, in %, that other processes used; client and server are the CPU
// seconds of the turn's clients and of the server's processes that worked
// for them. The benchmark's own watching is in neither.
type cpuUse struct {
	others, client, server float64
	// busy is the share of the machine's CPU time, in %, that the turn's
	// clients and server used: near 100, more batches in flight cannot
	// go faster.
	busy float64
}

func startAccount(b *testing.B, pool *pgxpool.Pool, workers ...*faults.Process) *cpuAccount {
	b.Helper()
	a := &cpuAccount{ticks: map[int]float64{}}
	clients, server, own := turnPids(b, pool, workers)
	for _, pid := range slices.Concat(clients, server, own) {
		a.ticks[pid] = procTicks(pid)
	}
	a.busy, a.total = machineTicks()
	return a
}

// use reads what the turn used since its start. Others are other programs,
// the server's sessions on other databases, and the kernel's threads (some
// of whose block I/O is the benchmark's). It assumes the server runs on
// this machine.
func (a *cpuAccount) use(b *testing.B, pool *pgxpool.Pool, workers ...*faults.Process) cpuUse {
	b.Helper()
	clients, server, own := turnPids(b, pool, workers)
	since := func(pids []int) float64 {
		var sum float64
		for _, pid := range pids {
			sum += procTicks(pid) - a.ticks[pid] // from 0 for a session opened since
		}
		return sum
	}
	c, s, o := since(clients), since(server), since(own)
	busy, total := machineTicks()
	u := cpuUse{client: c / clockTicks, server: s / clockTicks, others: math.NaN(), busy: math.NaN()}
	if total > a.total {
		u.others = max(0, 100*((busy-a.busy)-c-s-o)/(total-a.total))
		u.busy = min(100, 100*(c+s)/(total-a.total))
	}
	return u
}

// clockTicks is the kernel's clock ticks per second, the unit of /proc's
// CPU times (USER_HZ: 100 on every Linux architecture Go builds for but
// alpha and ia64).
const clockTicks = 100

// turnPids are a turn's clients (this process when it runs the loop, else
// the workers), the server's processes that work for them (the sessions on
// the pool's database other than the benchmark's own, and the checkpointer
// and writers: they write for other sessions too, but mostly for the
// turn's), and the benchmark's own processes (this one while it watches
// the workers, and its sessions: the pool's and the wait sampler's).
func turnPids(b *testing.B, pool *pgxpool.Pool, workers []*faults.Process) (clients, server, own []int) {
	b.Helper()
	if len(workers) == 0 {
		clients = []int{os.Getpid()}
	} else {
		own = []int{os.Getpid()}
	}
	for _, w := range workers {
		clients = append(clients, w.Cmd.Process.Pid)
	}
	rows, err := pool.Query(context.Background(), `SELECT pid, application_name = $1 FROM pg_stat_activity
WHERE datname = current_database() OR backend_type IN ('checkpointer', 'walwriter', 'background writer')`, benchSession)
	if err != nil {
		b.Fatal(err)
	}
	var (
		pid  int32
		mine bool
	)
	if _, err := pgx.ForEachRow(rows, []any{&pid, &mine}, func() error {
		if mine {
			own = append(own, int(pid))
		} else {
			server = append(server, int(pid))
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	return clients, server, own
}

// procTicks is the CPU time a process used, with that of the children it
// waited for, in clock ticks (0 when it is gone).
func procTicks(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command (in parentheses, it may hold spaces)
	// start with the 3rd, state; utime, stime, cutime and cstime are the
	// 14th to 17th.
	i := strings.LastIndexByte(string(data), ')')
	f := strings.Fields(string(data[i+1:]))
	var sum float64
	for _, k := range []int{11, 12, 13, 14} {
		if k < len(f) {
			v, _ := strconv.ParseFloat(f[k], 64)
			sum += v
		}
	}
	return sum
}

// machineTicks is the time all the machine's CPUs were busy, and all the
// time they had, in clock ticks, from /proc/stat.
func machineTicks() (busy, total float64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	for i, f := range strings.Fields(line)[1:] {
		if i >= 8 { // guest time, counted in user already
			break
		}
		v, _ := strconv.ParseFloat(f, 64)
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

// waitQuiet waits, at most a minute, until the machine's CPUs were at most
// THROUGHPUT_QUIET % busy (25; 100 does not wait) over half a second, so
// that a turn does not start while something else keeps the machine busy.
func waitQuiet(b *testing.B) {
	b.Helper()
	quiet := float64(envInt("THROUGHPUT_QUIET", 25))
	started := time.Now()
	for {
		busy := cpuBusy()
		if busy <= quiet || math.IsNaN(busy) {
			if waited := time.Since(started); waited > time.Second {
				tsay(b, "waited %s for the CPUs to be at most %.0f%% busy", waited.Round(time.Second), quiet)
			}
			return
		}
		if time.Since(started) > time.Minute {
			tsay(b, "the CPUs are still %.0f%% busy after a minute (THROUGHPUT_QUIET %.0f%%): measuring anyway", busy, quiet)
			return
		}
	}
}

// cpuBusy is the share of the machine's CPU time, in %, that was not idle
// over half a second.
func cpuBusy() float64 {
	b0, t0 := machineTicks()
	time.Sleep(500 * time.Millisecond)
	b1, t1 := machineTicks()
	if t1 <= t0 {
		return math.NaN()
	}
	return 100 * (b1 - b0) / (t1 - t0)
}

// tree says what faults.Build built: the commit, and how many Go files of
// the working tree, tests aside, differ from it (the binaries are built from the working
// tree, so a before and after measure each what it held).
func tree() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "an unknown commit"
	}
	desc := "commit " + strings.TrimSpace(string(out))
	// The whole tree's files (top), not only this directory's; tests are not in
	// the binaries.
	status, err := exec.Command("git", "status", "--porcelain", "--", ":(top)*.go", ":(top,exclude)*_test.go").Output()
	if lines := strings.TrimSpace(string(status)); err == nil && lines != "" {
		desc += fmt.Sprintf(" with %d Go files (not tests) changed or new", strings.Count(lines, "\n")+1)
	}
	return desc
}

func kilo(rate float64) string { return fmt.Sprintf("%.1fk", rate/1000) }

func ms(v float64) string { return fmt.Sprintf("%.2f", v) }

func cmpOr(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}

// tsay prints a line of the benchmark's progress or result on stdout too:
// go test keeps only the first lines of a benchmark's log.
func tsay(b *testing.B, format string, args ...any) {
	b.Helper()
	b.Logf(format, args...)
	fmt.Printf("THROUGHPUT "+format+"\n", args...)
}
