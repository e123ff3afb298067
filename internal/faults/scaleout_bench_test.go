package faults_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/faults"
)

// The scale-out backfill: an I/O-bound batch (it waits 50 ms on the server,
// once per batch, then counts its 200 rows) over 32 partitions, so that 4
// workers of concurrency 4 (16 batches at once) all have work and half the
// partitions wait for a slot. The table is big enough that no partition
// finishes within a step (a partition is worked at most a 10 s slice, and
// then perhaps part of another, per step).
const (
	scaleOutRows        = 1_600_000
	scaleOutBatch       = 200
	scaleOutPartitions  = 32
	scaleOutConcurrency = 4
	// scaleOutSleep is what each batch waits on the server.
	scaleOutSleep = 50 * time.Millisecond
	// scaleOutWarmUp is how long all the workers of an unlimited step run
	// the run's jobs before the window opens; a capped step waits
	// rateWarmUp, as TestPoolRate does (every worker has counted the others
	// and the budgets' bursts are spent).
	scaleOutWarmUp = 2 * time.Second
	scaleOutWindow = 10 * time.Second
	// The goal: 4 workers do at least scaleOutMinSpeedUp times the rows of
	// one, and a pool-wide rate of scaleOutCapShare of the 4 workers'
	// unlimited throughput holds within scaleOutCapTolerance.
	scaleOutMinSpeedUp   = 3.5
	scaleOutCapShare     = 0.6
	scaleOutCapTolerance = 0.05
	scaleOutFirstVersion = 20260601000000
)

// scaleOutFile is the I/O-bound backfill. pg_sleep is volatile, so the CTE
// is evaluated once per statement, not once per row (BenchmarkScaleOut
// checks with EXPLAIN ANALYZE). It is in the manual folder so that each
// step enqueues its own version with "enqueue run".
const scaleOutFile = `-- I/O-bound: each batch waits 50 ms on the server, once, then counts its rows.
-- table: counters
-- key: id
-- batch: %d
-- partitions: %d
-- rate: %d
%s-- attempts: 5
WITH pause AS MATERIALIZED (SELECT pg_sleep(%g))
UPDATE counters SET n = n + 1 FROM pause WHERE id BETWEEN @first AND @last;
`

// BenchmarkScaleOut measures how the pool's throughput grows with worker
// processes on an I/O-bound batch, and how a pool-wide rate caps it. On one
// private cluster, each step is a fresh run (its own version) with fresh
// worker processes of concurrency 4, measured from the database (the sum of
// the partitions' rows_done) over a 10 s window that opens after every
// worker runs the run's jobs and a warm-up (start-up excluded):
//
//   - 1, 2 and 4 workers, rate unlimited;
//   - 4 workers at a rate of 60% of the 4 workers' unlimited throughput,
//     with Redis (one budget for the pool), then without (equal shares).
//
// The duty cycle, where the tree has one, is off in every step: it would cap
// the pool at a share of one connection's time whatever the workers.
//
// It fails when 4 workers do less than 3.5 times the rows of one, or when a
// capped pool is off its rate by more than 5%. It prints a FIGURE line per
// step and a summary, and reports the ratios as metrics. Besides rows/s,
// each step's line says what limits it: the batches in their wait on
// average (in_sleep_avg, of slots), the CPU the workers, the cluster and
// the machine's other processes used, and how long this benchmark's
// processes waited for a CPU per batch. On 2 cores the 4-worker step needs
// about a core of its own (some 4.5 ms of CPU per batch), so other load on
// the machine shows in its figures: run it on a quiet machine. About 80 s.
//
//	go test -run XXX -bench ScaleOut -benchtime 1x ./internal/faults/
func BenchmarkScaleOut(b *testing.B) {
	for range b.N {
		benchScaleOut(b)
	}
}

func benchScaleOut(b *testing.B) {
	began := time.Now()
	rds := faults.NewRedis(b)
	s := newScaleOut(b)
	s.redisURL = rds.URL()
	s.setup()
	setUp := time.Since(began)

	var unlimited []scaleOutStep
	for _, n := range []int{1, 2, 4} {
		unlimited = append(unlimited, s.step(fmt.Sprintf("%dw", n), n, 0, false))
	}
	one, four := unlimited[0].rowsPerSecond, unlimited[2].rowsPerSecond
	// The cap, rounded to 100 rows/s.
	capRate := int(scaleOutCapShare*four/100+0.5) * 100
	redisStep := s.step("cap-redis", 4, capRate, true)
	shareStep := s.step("cap-share", 4, capRate, false)

	var summary strings.Builder
	dutyCycle := ""
	if s.dutyCycle != "" {
		dutyCycle = ", duty cycle off"
	}
	fmt.Fprintf(&summary, "scale-out (batch %d rows waiting %s, %d partitions, concurrency %d%s): ",
		scaleOutBatch, scaleOutSleep, scaleOutPartitions, scaleOutConcurrency, dutyCycle)
	for i, st := range unlimited {
		if i == 0 {
			fmt.Fprintf(&summary, "1 worker %.0f rows/s", st.rowsPerSecond)
			continue
		}
		fmt.Fprintf(&summary, ", %d workers %.0f (%.2fx)", st.workers, st.rowsPerSecond, st.rowsPerSecond/one)
		b.ReportMetric(st.rowsPerSecond/one, fmt.Sprintf("x_%d_workers", st.workers))
	}
	for _, st := range []scaleOutStep{redisStep, shareStep} {
		fmt.Fprintf(&summary, "; capped at %d (%s): %.0f rows/s (%.3f of the cap)", capRate, st.mode, st.rowsPerSecond, st.capRatio())
	}
	fmt.Fprintf(&summary, "; other processes used %.2f and %.2f cores of %d during the 1- and 4-worker windows; set-up %.1fs, total %.1fs",
		unlimited[0].othersCores, unlimited[2].othersCores, runtime.NumCPU(), setUp.Seconds(), time.Since(began).Seconds())
	scaleOutPrint(summary.String())
	b.ReportMetric(one, "rows/s_1_worker")
	b.ReportMetric(four, "rows/s_4_workers")
	b.ReportMetric(redisStep.capRatio(), "cap_ratio")
	b.ReportMetric(shareStep.capRatio(), "cap_ratio_share")

	require.GreaterOrEqual(b, four/one, scaleOutMinSpeedUp,
		"4 workers must do at least %.1fx the rows/s of 1: %.0f against %.0f rows/s (%.2fx). "+
			"Waits for a CPU per batch: %s with 1 worker, %s with 4; other processes used %.2f and %.2f cores of %d meanwhile. "+
			"See the FIGURE lines (in_sleep_avg: batches in their wait; cpu_cores_*, runq_wait_*: CPU use and waits for a CPU)",
		scaleOutMinSpeedUp, four, one, four/one,
		unlimited[0].runqWaitPerBatch.Round(10*time.Microsecond), unlimited[2].runqWaitPerBatch.Round(10*time.Microsecond),
		unlimited[0].othersCores, unlimited[2].othersCores, runtime.NumCPU())
	for _, st := range []scaleOutStep{redisStep, shareStep} {
		require.InDelta(b, 1, st.capRatio(), scaleOutCapTolerance,
			"4 workers capped at %d rows/s (%s) must hold it within %.0f%%: measured %.0f rows/s",
			capRate, st.mode, scaleOutCapTolerance*100, st.rowsPerSecond)
	}
}

// scaleOut is the fault tests' scenario (a private cluster with the schema)
// with the benchmark's table and steps.
type scaleOut struct {
	*scenario
	b        *testing.B
	redisURL string
	next     int64 // the next step's version
	// dutyCycle is the header line that turns the run's duty cycle off,
	// when this tree's backfills have one; empty when they do not.
	dutyCycle string
}

func newScaleOut(b *testing.B) *scaleOut {
	b.Helper()
	s := &scaleOut{scenario: newScenario(b), b: b, next: scaleOutFirstVersion, dutyCycle: scaleOutDutyCycleOff(b)}
	require.NoError(b, os.MkdirAll(filepath.Join(s.dir, batches.ManualDir), 0o755))
	return s
}

// scaleOutDutyCycleOff is "-- duty_cycle: off" when this tree's backfills
// have a duty cycle, and "" when they do not (the header key is unknown).
// A duty cycle caps the whole pool at a share of one connection's time,
// whatever the workers (whether a run has one by default or not): this
// benchmark measures what the workers themselves can do, and the pool-wide
// rate, so it turns it off explicitly.
func scaleOutDutyCycleOff(tb testing.TB) string {
	const line = "-- duty_cycle: off\n"
	_, err := batches.ParseSQL(fmt.Sprintf(scaleOutFile, scaleOutBatch, scaleOutPartitions, 0, line, scaleOutSleep.Seconds()))
	switch {
	case err == nil:
		return line
	case strings.Contains(err.Error(), `unknown header key "duty_cycle"`):
		return ""
	}
	require.NoError(tb, err, "the scale-out backfill")
	return ""
}

// setup creates counters and checks that the statement waits once per
// batch, not once per row.
func (s *scaleOut) setup() {
	s.b.Helper()
	// Room on each page for the new row versions: the steps update the
	// same rows again, and heap-only updates keep the index as it is.
	s.exec(`CREATE TABLE counters (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0) WITH (fillfactor = 60);
INSERT INTO counters (id) SELECT g FROM generate_series(1, ` + strconv.Itoa(scaleOutRows) + `) g;`)
	s.exec(`VACUUM ANALYZE counters`)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := s.pool.Begin(ctx)
	require.NoError(s.b, err)
	defer func() { _ = tx.Rollback(ctx) }()
	stmt := fmt.Sprintf(`EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON)
WITH pause AS MATERIALIZED (SELECT pg_sleep(%g))
UPDATE counters SET n = n + 1 FROM pause WHERE id BETWEEN $1 AND $2`, scaleOutSleep.Seconds())
	started := time.Now()
	rows, err := tx.Query(ctx, stmt, 1, scaleOutBatch)
	require.NoError(s.b, err)
	var plan []string
	for rows.Next() {
		var line string
		require.NoError(s.b, rows.Scan(&line))
		plan = append(plan, line)
	}
	require.NoError(s.b, rows.Err())
	took := time.Since(started)
	// The CTE's scan runs once: "CTE Scan on pause (actual rows=1 loops=1)".
	var cteScan string
	for _, line := range plan {
		if strings.Contains(line, "CTE Scan on pause") {
			cteScan = strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(line), "->"))
		}
	}
	figure(s.b, "scale-out-statement", "batch", scaleOutBatch, "took", took.Round(time.Millisecond).String(), "cte_scan", strconv.Quote(cteScan))
	require.Contains(s.b, cteScan, "loops=1)", "the pause is scanned once per batch:\n%s", strings.Join(plan, "\n"))
	require.GreaterOrEqual(s.b, took, scaleOutSleep, "the batch must wait %s", scaleOutSleep)
	require.Less(s.b, took, 3*scaleOutSleep, "the batch must wait %s once, not once per row", scaleOutSleep)
}

// scaleOutStep is one step's measure.
type scaleOutStep struct {
	name          string
	workers       int
	rate          int // 0: unlimited
	mode          string
	rowsPerSecond float64
	// othersCores is the CPU (in cores) that processes other than this
	// benchmark's used in the window: they compete with the batches.
	othersCores float64
	// runqWaitPerBatch is the time this benchmark's processes waited for a
	// CPU, per batch.
	runqWaitPerBatch time.Duration
}

// capRatio is the measured rate over the cap.
func (st scaleOutStep) capRatio() float64 { return st.rowsPerSecond / float64(st.rate) }

// step enqueues a new run of the scale-out backfill at rate (0: unlimited),
// starts workers worker processes (with Redis when redis), measures the
// pool's rows/s over the window after the warm-up, and stops the workers and
// cancels the run.
func (s *scaleOut) step(name string, workers, rate int, redis bool) scaleOutStep {
	b := s.b
	b.Helper()
	began := time.Now()
	version := s.next
	s.next++
	content := fmt.Sprintf(scaleOutFile, scaleOutBatch, scaleOutPartitions, rate, s.dutyCycle, scaleOutSleep.Seconds())
	path := filepath.Join(s.dir, batches.ManualDir, fmt.Sprintf("%d_scale_out_%s.sql", version, strings.ReplaceAll(name, "-", "_")))
	require.NoError(b, os.WriteFile(path, []byte(content), 0o644))
	res := s.enqueue(30*time.Second, "run", strconv.FormatInt(version, 10))
	require.Zero(b, res.Code, "enqueue run %d: %s", version, res.Output())

	env := s.env()
	mode := "unlimited"
	if rate > 0 {
		mode = batches.RateLimitShareNoRedis
	}
	if redis {
		env = append(env, "REDIS_URL="+s.redisURL)
		mode = batches.RateLimitRedis
	}
	procs := make([]*faults.Process, workers)
	for i := range procs {
		procs[i] = faults.StartWorker(b, s.bins, fmt.Sprintf("%s-w%d", name, i+1), env,
			"--concurrency", strconv.Itoa(scaleOutConcurrency))
	}

	// Warm-up: every worker runs jobs of the run (start-up excluded), and
	// with a rate every worker has beaten since and reports the mode.
	s.waitFor("all workers running the run's jobs", 60*time.Second, func() (bool, error) {
		n, err := s.rateWorkersRunning(version)
		return n == workers, err
	})
	allRunning := time.Now()
	warmUp := scaleOutWarmUp
	if rate > 0 {
		var dbAllRunning time.Time
		require.NoError(b, s.pool.QueryRow(context.Background(), `SELECT now()`).Scan(&dbAllRunning))
		s.waitFor("every worker's heartbeat after all ran jobs, with mode "+mode, 30*time.Second, func() (bool, error) {
			n, err := s.rateWorkersReporting(mode, dbAllRunning)
			return n == workers, err
		})
		warmUp = rateWarmUp
	}
	time.Sleep(time.Until(allRunning.Add(warmUp)))
	requireRunning(b, procs...)

	// The window, with the batches in flight sampled from pg_stat_activity
	// and the machine's CPU from /proc/stat.
	cpu0, ours0, xacts0 := readCPU(b), s.ourCPU(), s.xacts()
	rows0, t0 := s.rateRowsDone(version)
	sampler := s.sampleActivity(t0.Add(scaleOutWindow))
	time.Sleep(time.Until(t0.Add(scaleOutWindow)))
	rows1, t1 := s.rateRowsDone(version)
	cpu1, ours1, xacts1 := readCPU(b), s.ourCPU(), s.xacts()
	act := sampler()
	requireRunning(b, procs...)

	var state string
	var done int
	require.NoError(b, s.pool.QueryRow(context.Background(), `
SELECT r.state, count(*) FILTER (WHERE bp.state = 'done')
FROM backfill_runs r JOIN backfill_partitions bp ON bp.run_id = r.id
WHERE r.version = $1 GROUP BY r.id, r.state ORDER BY r.id DESC LIMIT 1`, version).Scan(&state, &done))
	require.Contains(b, []string{"pending", "running"}, state, "the run must still be going at the end of the window; make the table bigger")
	require.Zero(b, done, "no partition may finish within the window; make the table bigger")
	if rate > 0 {
		n, err := s.rateWorkersReporting(mode, t0)
		require.NoError(b, err)
		require.Equal(b, workers, n, "every worker reports %q in the window", mode)
	}
	stopWorkers(b, procs...)
	res = s.enqueue(30*time.Second, "cancel", strconv.FormatInt(version, 10))
	require.Zero(b, res.Code, "enqueue cancel %d: %s", version, res.Output())

	elapsed := t1.Sub(t0)
	ours := ourCPUSince(ours0, ours1)
	batchesDone := math.Max(1, float64(rows1-rows0)/scaleOutBatch)
	st := scaleOutStep{name: name, workers: workers, rate: rate, mode: mode, rowsPerSecond: float64(rows1-rows0) / elapsed.Seconds(),
		othersCores:      math.Max(0, cpu1.busySince(cpu0)*float64(runtime.NumCPU())-ours["all"].run.Seconds()/elapsed.Seconds()),
		runqWaitPerBatch: time.Duration(float64(ours["all"].wait) / batchesDone)}
	kv := []any{"workers", workers, "concurrency", scaleOutConcurrency, "rate", rate, "mode", strconv.Quote(mode),
		"rows_per_second", fmt.Sprintf("%.0f", st.rowsPerSecond),
		"rows_per_second_per_worker", fmt.Sprintf("%.0f", st.rowsPerSecond/float64(workers)),
		// What one slot would do if a batch took only its wait.
		"slot_efficiency", fmt.Sprintf("%.3f", st.rowsPerSecond/float64(workers*scaleOutConcurrency)/(scaleOutBatch/scaleOutSleep.Seconds())),
		"in_sleep_avg", fmt.Sprintf("%.1f", act.inSleep), "other_active_avg", fmt.Sprintf("%.1f", act.otherActive),
		"slots", workers * scaleOutConcurrency, "samples", act.samples,
		// The machine's CPU in use by all processes, and by this
		// benchmark's (the workers, the cluster, Redis, the benchmark), in
		// cores; what the rest use competes with the batches.
		"cpu_cores_machine", fmt.Sprintf("%.2f", cpu1.busySince(cpu0)*float64(runtime.NumCPU())),
		"cpu_cores_ours", fmt.Sprintf("%.2f", ours["all"].run.Seconds()/elapsed.Seconds()),
		"cpu_cores_workers", fmt.Sprintf("%.2f", ours["workers"].run.Seconds()/elapsed.Seconds()),
		"cpu_cores_postgres", fmt.Sprintf("%.2f", ours["postgres"].run.Seconds()/elapsed.Seconds()),
		"cpu_cores_others", fmt.Sprintf("%.2f", st.othersCores),
		// Per batch: the CPU time this benchmark's processes used, and the
		// time they waited for a CPU (on a run queue), in milliseconds, and
		// the transactions the cluster committed or rolled back.
		"cpu_ms_per_batch", fmt.Sprintf("%.2f", ms(ours["all"].run)/batchesDone),
		"runq_wait_ms_per_batch", fmt.Sprintf("%.2f", ms(ours["all"].wait)/batchesDone),
		"runq_wait_ms_per_batch_postgres", fmt.Sprintf("%.2f", ms(ours["postgres"].wait)/batchesDone),
		"runq_wait_ms_per_batch_workers", fmt.Sprintf("%.2f", ms(ours["workers"].wait)/batchesDone),
		"xacts_per_batch", fmt.Sprintf("%.1f", float64(xacts1-xacts0)/batchesDone),
		"rows", rows1 - rows0, "window", elapsed, "warm_up_from_start", allRunning.Add(warmUp).Sub(began), "step", time.Since(began)}
	if rate > 0 {
		kv = append(kv, "cap_ratio", fmt.Sprintf("%.3f", st.capRatio()))
	}
	figure(b, "scale-out-"+name, kv...)
	return st
}

// xacts reads the transactions the cluster committed and rolled back.
func (s *scaleOut) xacts() int64 {
	s.b.Helper()
	var n int64
	require.NoError(s.b, s.pool.QueryRow(context.Background(),
		`SELECT sum(xact_commit + xact_rollback)::bigint FROM pg_stat_database`).Scan(&n))
	return n
}

// scaleOutActivity is what pg_stat_activity showed on average over a
// window: sessions waiting in pg_sleep (batches in flight, in their
// statement), and other active client sessions (batches between their
// statements, River, the heartbeats).
type scaleOutActivity struct {
	inSleep, otherActive float64
	samples              int
}

// sampleActivity samples pg_stat_activity every 100 ms until until; the
// function it returns waits for the end and gives the averages.
func (s *scaleOut) sampleActivity(until time.Time) func() scaleOutActivity {
	var (
		wg  sync.WaitGroup
		act scaleOutActivity
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		var sleeping, other int
		for time.Now().Before(until) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			var sl, ot int
			err := s.pool.QueryRow(ctx, `
SELECT count(*) FILTER (WHERE wait_event = 'PgSleep'),
	count(*) FILTER (WHERE state = 'active' AND wait_event IS DISTINCT FROM 'PgSleep' AND pid <> pg_backend_pid())
FROM pg_stat_activity WHERE backend_type = 'client backend'`).Scan(&sl, &ot)
			cancel()
			if err == nil {
				sleeping += sl
				other += ot
				act.samples++
			}
			time.Sleep(100 * time.Millisecond)
		}
		if act.samples > 0 {
			act.inSleep = float64(sleeping) / float64(act.samples)
			act.otherActive = float64(other) / float64(act.samples)
		}
	}()
	return func() scaleOutActivity {
		wg.Wait()
		return act
	}
}

// cpuTimes is the machine's CPU time from /proc/stat, in clock ticks.
type cpuTimes struct{ busy, total uint64 }

func readCPU(tb testing.TB) cpuTimes {
	tb.Helper()
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line)
	var c cpuTimes
	for i, f := range fields[1:] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			continue
		}
		// user nice system idle iowait irq softirq steal (guest is in user).
		if i >= 8 {
			break
		}
		c.total += v
		if i != 3 && i != 4 {
			c.busy += v
		}
	}
	return c
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// busySince is the share of the machine's CPU time that was busy since c0.
func (c cpuTimes) busySince(c0 cpuTimes) float64 {
	if c.total <= c0.total {
		return 0
	}
	return float64(c.busy-c0.busy) / float64(c.total-c0.total)
}

// ourCPU reads, for each process of this benchmark, its kind: "workers"
// (the worker processes), "postgres" (the private cluster's postmaster and
// its children: backends, autovacuum ...) or "rest" (the benchmark itself
// and its other children: Redis), and from the scheduler, summed over its
// threads, the time it ran on a CPU and the time it waited on a run queue
// for one.
func (s *scaleOut) ourCPU() map[int]procCPU {
	var backend int
	if err := s.pool.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&backend); err != nil {
		return nil
	}
	postmaster := -1
	if comm, ppid, ok := procParent(backend); ok && comm != "" {
		postmaster = ppid
	}
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	cpu := map[int]procCPU{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, ppid, ok := procParent(pid)
		var kind string
		switch {
		case !ok:
			continue
		case pid == postmaster || ppid == postmaster:
			kind = "postgres"
		case ppid == self && comm == "worker":
			kind = "workers"
		case pid == self || ppid == self:
			kind = "rest"
		default:
			continue
		}
		c := procCPU{kind: kind}
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, t := range tasks {
			data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
			if err != nil {
				continue
			}
			var run, wait time.Duration
			if _, err := fmt.Sscan(string(data), &run, &wait); err == nil {
				c.run += run
				c.wait += wait
			}
		}
		cpu[pid] = c
	}
	return cpu
}

// procCPU is a process's kind and its time on a CPU and on a run queue.
type procCPU struct {
	kind      string
	run, wait time.Duration
}

// ourCPUSince sums, by kind and in all ("all"), what the processes of t1
// used since t0 (all of it for those started since; those that exited
// meanwhile are lost, and so are the threads of a process that exited).
func ourCPUSince(t0, t1 map[int]procCPU) map[string]procCPU {
	sums := map[string]procCPU{}
	for pid, c := range t1 {
		if c0, ok := t0[pid]; ok && c0.run <= c.run && c0.wait <= c.wait {
			c.run, c.wait = c.run-c0.run, c.wait-c0.wait
		}
		for _, k := range []string{c.kind, "all"} {
			sum := sums[k]
			sum.run += c.run
			sum.wait += c.wait
			sums[k] = sum
		}
	}
	return sums
}

// procParent reads a process's command and parent from /proc/PID/stat.
func procParent(pid int) (string, int, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, false
	}
	// The command is in parentheses and may hold spaces: "state ppid ..."
	// follow the last ")".
	text := string(data)
	open, end := strings.IndexByte(text, '('), strings.LastIndexByte(text, ')')
	if open < 0 || end < open {
		return "", 0, false
	}
	f := strings.Fields(text[end+1:])
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return text[open+1 : end], ppid, err == nil
}

// scaleOutPrint prints a line of the benchmark's output to stdout: a
// benchmark's log is cut to its first lines.
func scaleOutPrint(line string) {
	fmt.Println("    " + line)
}
