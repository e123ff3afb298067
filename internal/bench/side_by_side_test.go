package bench

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/backfill/backfill/internal/faults"
)

// BenchmarkThroughputSideBySide runs the hand-written loop and the engine of
// BenchmarkThroughputBinaries at the same time, each on a table of its own
// in a database of its own, so that both meet the same machine: on a shared
// host the same turn runs 20% faster or slower from one minute to the next,
// which interleaved turns only average out over many runs. Both speeds are
// over the time both ran: from the later start (the loop's first batch, the
// run's started_at) to the earlier finish, counting the batches committed
// in between.
// Two of them share the machine's two CPUs, so both go slower than alone; a
// side that costs more per batch falls behind. Cases are one worker's
// (partitions beyond one would compare parallel batches with one loop).
//
//	go test -run '^$' -bench ThroughputSideBySide -benchtime 1x -timeout 60m ./internal/bench/
//	THROUGHPUT_SIDE_BY_SIDE=1 scripts/bench-throughput    # the same
//
// THROUGHPUT_ROWS (2000000), THROUGHPUT_RUNS (5), THROUGHPUT_CASES
// (b1000-p1-w1,b5000-p1-w1) and THROUGHPUT_WORKER_ARGS as there.
func BenchmarkThroughputSideBySide(b *testing.B) {
	rows := envInt("THROUGHPUT_ROWS", 2_000_000)
	runs := envInt("THROUGHPUT_RUNS", 5)
	cases, err := parseThroughputCases(cmpOr(os.Getenv("THROUGHPUT_CASES"), "b1000-p1-w1,b5000-p1-w1"))
	if err != nil {
		b.Fatal(err)
	}
	workerArgs := fields(os.Getenv("THROUGHPUT_WORKER_ARGS"))
	bins := faults.Build(b)
	loopDB := throughputDB + "_loop"
	b.Cleanup(func() { dropThroughputDatabases(throughputDB, loopDB) })

	tsay(b, "side by side: %d rows, %d runs, cases %s; %s; binaries built from %s", rows, runs, caseNames(cases), machine(b), tree())
	ratios := make([][]float64, len(cases))
	loopRates := make([][]float64, len(cases))
	engineRates := make([][]float64, len(cases))
	for run := range runs {
		for i, c := range cases {
			loop, engine := sideBySide(b, bins, rows, c, workerArgs, loopDB)
			tsay(b, "%s run %d/%d side by side: loop %s rows/s, engine %s rows/s, engine/loop %.3f",
				c.name, run+1, runs, kilo(loop), kilo(engine), engine/loop)
			ratios[i] = append(ratios[i], engine/loop)
			loopRates[i] = append(loopRates[i], loop)
			engineRates[i] = append(engineRates[i], engine)
		}
	}
	fmt.Printf("\nSide by side: the loop and the engine at once, %d rows each, medians of %d runs\n\n", rows, runs)
	fmt.Printf("| case | loop rows/s | engine rows/s | engine/loop | runs' ratios |\n|---|---|---|---|---|\n")
	for i, c := range cases {
		var each []string
		for _, r := range ratios[i] {
			each = append(each, fmt.Sprintf("%.3f", r))
		}
		fmt.Printf("| %s | %s | %s | %.3f | %s |\n", c.name, kilo(median(loopRates[i])), kilo(median(engineRates[i])),
			median(ratios[i]), strings.Join(each, " "))
		b.ReportMetric(median(ratios[i]), c.name+"_side_by_side_engine/loop")
	}
}

// sideBySide runs one turn of the loop and one of the engine at once and
// returns their speeds over the time both ran.
func sideBySide(b *testing.B, bins faults.Binaries, rows int, c throughputCase, workerArgs []string, loopDB string) (loop, engine float64) {
	b.Helper()
	if c.partitions != 1 || c.workers != 1 {
		b.Fatalf("THROUGHPUT_CASES: side by side compares one partition of one worker with the loop, not %s", c.name)
	}
	ctx := context.Background()
	url, pool := throughputDatabase(b, loopDB, rows)
	defer pool.Close()
	conn := prepareLoop(b, url, pool)
	defer conn.Close(ctx)

	var (
		loopStart    time.Time
		loopProgress []rowsAt
		loopDone     = make(chan error, 1)
	)
	turn := runEngine(b, bins, rows, c, workerArgs, func() {
		go func() {
			loopStart = time.Now()
			_, done, err := keysetLoop(ctx, conn, c.batch, func(t time.Time, n int64) {
				loopProgress = append(loopProgress, rowsAt{at: t, rows: n})
			})
			if err == nil && done != int64(rows) {
				err = fmt.Errorf("it rewrote %d rows of %d", done, rows)
			}
			loopDone <- err
		}()
	})
	if err := <-loopDone; err != nil {
		b.Fatalf("the loop: %v", err)
	}
	checkRewritten(b, pool, "the loop")
	// Both ran from the later start to the earlier finish.
	start, end := loopStart, turn.finishedAt
	if turn.startedAt.After(start) {
		start = turn.startedAt
	}
	if last := loopProgress[len(loopProgress)-1].at; last.Before(end) {
		end = last
	}
	if !end.After(start) {
		b.Fatalf("the loop and the engine did not run at the same time (one from %s, the other until %s): THROUGHPUT_ROWS %d is too few",
			start.Format(time.StampMilli), end.Format(time.StampMilli), rows)
	}
	speed := func(progress []rowsAt) float64 {
		return float64(rowsBy(progress, end)-rowsBy(progress, start)) / end.Sub(start).Seconds()
	}
	return speed(loopProgress), speed(turn.progress)
}
