package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/cli"
	"github.com/backfill/backfill/internal/testdb"
	"github.com/backfill/backfill/jobs"
)

func statusFloat(v float64) *float64 { return &v }

func TestStatus_ProgressBar(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		r    batches.RunStatus
		want string
	}{
		{"nothing done", batches.RunStatus{State: batches.StateRunning, RowsEstimated: 1000}, "[--------------------]   0%"},
		{"half", batches.RunStatus{State: batches.StateRunning, RowsDone: 500, RowsEstimated: 1000}, "[##########----------]  50%"},
		{"a third", batches.RunStatus{State: batches.StateRunning, RowsDone: 333, RowsEstimated: 1000}, "[######--------------]  33%"},
		// The estimate is the planner's: full only once the run completed.
		{"all but done", batches.RunStatus{State: batches.StateRunning, RowsDone: 1000, RowsEstimated: 1000}, "[###################-]  99%"},
		{"completed", batches.RunStatus{State: batches.StateCompleted, RowsDone: 1000, RowsEstimated: 1000}, "[####################] 100%"},
		{"completed empty table", batches.RunStatus{State: batches.StateCompleted}, "[####################] 100%"},
		{"estimate 0", batches.RunStatus{State: batches.StatePending}, "[--------------------]    -"},
		{"failed half way", batches.RunStatus{State: batches.StateFailed, RowsDone: 500, RowsEstimated: 1000}, "[##########----------]  50%"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := progressCell(tc.r, barWidth)
			require.Equal(t, tc.want, got)
			require.Len(t, progressBar(tc.r, barWidth), barWidth+2)
		})
	}
}

func TestStatus_FormatETA(t *testing.T) {
	t.Parallel()
	for seconds, want := range map[float64]string{
		0:         "0s",
		0.4:       "0s",
		-3:        "0s",
		45:        "45s",
		44.6:      "45s",
		59.6:      "1m00s",
		200:       "3m20s",
		3599:      "59m59s",
		3600:      "1h00m",
		3720:      "1h02m",
		7170:      "2h00m",
		86399:     "24h00m",
		90000:     "1d01h",
		1e30:      "∞",
		3 * 86400: "3d00h",
	} {
		require.Equal(t, want, formatETA(seconds), "%g s", seconds)
	}

	// In the table: "-" when unknown, nothing once finished.
	for _, tc := range []struct {
		r    batches.RunStatus
		want string
	}{
		{batches.RunStatus{State: batches.StateRunning, ETASeconds: statusFloat(200)}, "3m20s"},
		// While uncertain, the range; once within about 10% either way, the
		// ETA alone.
		{batches.RunStatus{State: batches.StateRunning, ETASeconds: statusFloat(45), ETALowSeconds: statusFloat(30), ETAHighSeconds: statusFloat(65)}, "30s–1m05s"},
		{batches.RunStatus{State: batches.StateRunning, ETASeconds: statusFloat(200), ETALowSeconds: statusFloat(190), ETAHighSeconds: statusFloat(225)}, "3m20s"},
		{batches.RunStatus{State: batches.StateRunning, ETASeconds: statusFloat(2.2), ETALowSeconds: statusFloat(2.1), ETAHighSeconds: statusFloat(2.4)}, "2s"},
		{batches.RunStatus{State: batches.StateRunning, ETASeconds: statusFloat(5), ETALowSeconds: statusFloat(4.9), ETAHighSeconds: statusFloat(6.3)}, "5s–6s"},
		{batches.RunStatus{State: batches.StateRunning}, "-"},
		{batches.RunStatus{State: batches.StatePending}, "-"},
		{batches.RunStatus{State: batches.StatePaused}, "-"},
		{batches.RunStatus{State: batches.StateCompleted}, ""},
		{batches.RunStatus{State: batches.StateFailed}, ""},
		{batches.RunStatus{State: batches.StateCancelled}, ""},
	} {
		require.Equal(t, tc.want, etaCell(tc.r), "%s", tc.r.State)
	}
}

func TestStatus_HumanCount(t *testing.T) {
	t.Parallel()
	for n, want := range map[float64]string{
		0: "0", 2.5: "2.5", 7: "7", 980.4: "980", 9999: "9999", 10_000: "10.0k", 12_345: "12.3k", 999_400: "999k",
		999_600: "1.00M", 1_234_567: "1.23M", 52_000_000: "52.0M", 3e9: "3.00B", 5e12: "5000B",
	} {
		require.Equal(t, want, humanCount(n), "%g", n)
	}
}

// statusLines renders runs for a 120-column terminal and returns the lines,
// each checked to fit.
func statusLines(t *testing.T, runs []batches.RunStatus) []string {
	t.Helper()
	return statusLinesWithin(t, runs, statusWidth)
}

func statusLinesWithin(t *testing.T, runs []batches.RunStatus, width int) []string {
	t.Helper()
	var out bytes.Buffer
	writeStatus(&out, runs, nil, false, width)
	t.Logf("\n%s", out.String())
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	for _, l := range lines {
		require.LessOrEqual(t, len([]rune(l)), width, "line too wide for %d columns: %q", width, l)
	}
	return lines
}

// The table follows the terminal's width: a wide one gets everything, a
// narrow one loses the mode column and the bar (the percentage stays) and
// cuts long names, and $COLUMNS stands in when stdout is no terminal.
func TestStatus_FollowsTheTerminalsWidth(t *testing.T) {
	t.Parallel()
	started := time.Now().Add(-time.Minute)
	running := batches.RunStatus{Version: 20260301120100, Name: "orders_price_eur_with_a_long_name", Mode: batches.ModeAuto, Direction: batches.DirectionUp,
		RunNumber: 1, State: batches.StateRunning, RowsDone: 610_000, RowsEstimated: 1_000_000, RowsPerSecond: 19_960,
		ETASeconds: statusFloat(19.5), Rate: 20_000, BatchSize: 1000, HeldBack: "rate limit (20000 rows/s) " + strings.Repeat("and more ", 10), StartedAt: &started}

	wide := statusLinesWithin(t, []batches.RunStatus{running}, 200)
	require.Regexp(t, `^VERSION +NAME +MODE +RUN +STATE +PROGRESS +ROWS +ROWS/S +ETA +FAILED$`, wide[0])
	require.Regexp(t, `orders_price_eur_with_a_long_name +auto +1 +running +\[#{12}-{8}\]  61%`, wide[1])
	require.NotContains(t, wide[2], "…", "a wide terminal shows the whole reason")

	narrow := statusLinesWithin(t, []batches.RunStatus{running}, 80)
	require.Regexp(t, `^VERSION +NAME +RUN +STATE +DONE +ROWS +ROWS/S +ETA +FAILED$`, narrow[0])
	require.Regexp(t, `^20260301120100 +orders_p[^ ]*… +1 +running +61% +610k/~1\.00M +20\.0k +20s +0$`, narrow[1])
	require.True(t, strings.HasSuffix(narrow[2], "…"), narrow[2])

	require.Equal(t, 97, terminalWidth(&bytes.Buffer{}, func(k string) string { return map[string]string{"COLUMNS": "97"}[k] }))
	require.Equal(t, statusWidthMin, terminalWidth(&bytes.Buffer{}, func(k string) string { return map[string]string{"COLUMNS": "20"}[k] }))
	require.Equal(t, statusWidth, terminalWidth(&bytes.Buffer{}, func(string) string { return "" }))
}

// The table fits 120 columns, with what holds a run back and a failed
// run's error on indented lines under it.
func TestStatus_TableLayout(t *testing.T) {
	t.Parallel()
	started := time.Now().Add(-time.Minute)
	errText := "SQLSTATE 23505: duplicate key value violates unique constraint \"orders_pkey\" " + strings.Repeat("and more ", 20)
	completed := batches.RunStatus{Version: 20260301120000, Name: "users_status_active", Mode: batches.ModeAuto, Direction: batches.DirectionUp,
		RunNumber: 1, State: batches.StateCompleted, RowsDone: 100_000, RowsEstimated: 100_000, RowsPerSecond: 52_000, StartedAt: &started}
	running := batches.RunStatus{Version: 20260301120100, Name: "orders_price_eur", Mode: batches.ModeAuto, Direction: batches.DirectionUp,
		RunNumber: 1, State: batches.StateRunning, RowsDone: 610_000, RowsEstimated: 1_000_000, RowsPerSecond: 19_960,
		ETASeconds: statusFloat(19.5), Rate: 20_000, DutyCycle: 0.25, BusyShare: 0.184, BatchSize: 1000, RateLimit: batches.RateLimitRedis,
		HeldBack: "rate limit (20000 rows/s)", StartedAt: &started}
	reverted := batches.RunStatus{Version: 20260301120000, Name: "users_status_active", Mode: batches.ModeAuto, Direction: batches.DirectionDown,
		RunNumber: 2, State: batches.StateFailed, RowsDone: 4000, RowsEstimated: 10_000, BatchesFailed: 2, LastError: &errText, StartedAt: &started}
	waiting := batches.RunStatus{Version: 20260301120200, Name: "feature_flags_to_redis", Mode: batches.ModeManual, Direction: batches.DirectionUp,
		RunNumber: 1, State: batches.StatePending, RowsEstimated: 40, HeldBack: "waiting for workers (1 of 1 partitions)",
		DutyCycle: 0.25, BatchSize: 1000}

	// Room enough: the full 20-cell bar.
	lines := statusLines(t, []batches.RunStatus{completed, running})
	require.Len(t, lines, 1+2+2)
	require.Regexp(t, `^VERSION +NAME +MODE +RUN +STATE +PROGRESS +ROWS +ROWS/S +ETA +FAILED$`, lines[0])
	require.Regexp(t, `^20260301120000  users_status_active  auto  1    completed  \[#{20}\] 100%    100k/100k   52\.0k {12}0$`, lines[1])
	require.Regexp(t, `^20260301120100  orders_price_eur     auto  1    running    \[#{12}-{8}\]  61%  610k/~1\.00M   20\.0k  20s       0$`, lines[2])
	require.Equal(t, "    held back: rate limit (20000 rows/s)", lines[3])
	require.Equal(t, "    throttle: rate 20000 rows/s (pool-wide, Redis), duty 25%, batch 1000", lines[4])
	require.NotContains(t, lines[4], "busy", "the busy share shows only where it holds the run back")
	// The columns line up: the ETA cells end where the header's does, and a
	// finished run has none.
	end := strings.Index(lines[0], "ETA") + len("ETA")
	require.Equal(t, "20s", lines[2][end-3:end])
	require.Equal(t, "   ", lines[1][end-3:end])

	// Every kind of line, and a name too long for 120 columns: the bar gives
	// way to half its width, then the name is cut.
	long := running
	long.Name = "orders_price_eur_with_a_rather_long_name_indeed"
	long.RateLimit = batches.RateLimitShareUnreachable
	who, at := "ann@ops1", time.Date(2026, 3, 1, 12, 5, 0, 0, time.Local)
	long.ThrottledBy, long.ThrottledAt = &who, &at
	lines = statusLines(t, []batches.RunStatus{completed, long, reverted, waiting})
	require.Len(t, lines, 1+4+5)
	require.Regexp(t, `^20260301120000 +users_status_active +auto +1 +completed +\[#{10}\] 100% +100k/100k +52\.0k +0$`, lines[1])
	require.Regexp(t, `^20260301120100 +orders_price_eur_with… +auto +1 +running +\[#{6}-{4}\]  61% +610k/~1\.00M +20\.0k +20s +0$`, lines[2])
	require.Equal(t, "    held back: rate limit (20000 rows/s)", lines[3])
	require.Equal(t, "    throttle: rate 20000 rows/s (shared: Redis unreachable), duty 25%, batch 1000; set by ann@ops1 Mar 1 12:05:00", lines[4])
	require.Regexp(t, `^20260301120000 +users_status_active +auto +2 revert +failed +\[#{4}-{6}\]  40% +4000/~10\.0k +0 +2$`, lines[5])
	require.True(t, strings.HasPrefix(lines[6], "    last error: SQLSTATE 23505: duplicate key value"), lines[6])
	require.True(t, strings.HasSuffix(lines[6], "…"), "a long error is cut: %q", lines[6])
	require.Regexp(t, `^20260301120200 +feature_flags_to_redis +manual +1 +pending +\[-{10}\]   0% +0/~40 +- +- +0$`, lines[7])
	require.Equal(t, "    held back: waiting for workers (1 of 1 partitions)", lines[8])
	require.Equal(t, "    throttle: rate unlimited, duty 25%, batch 1000", lines[9])
	end = strings.Index(lines[0], "ETA") + len("ETA")
	require.Equal(t, "20s", string([]rune(lines[2])[end-3:end]))
	require.Equal(t, "  -", string([]rune(lines[7])[end-3:end]))

	// An adaptive run says what its batches aim at.
	adaptive := running
	adaptive.BatchTimeMS, adaptive.Rate, adaptive.DutyCycle = 200, 0, 0
	lines = statusLines(t, []batches.RunStatus{adaptive})
	require.Equal(t, "    throttle: rate unlimited, duty off, batches aim at 200ms", lines[3])

	// The demo's three backfills keep their names and most of the bar.
	lines = statusLines(t, []batches.RunStatus{completed, running, waiting})
	require.Regexp(t, `^20260301120200  feature_flags_to_redis  manual  1    pending `, lines[5])
	require.Regexp(t, `  \[#{15}\] 100%  `, lines[1])
}

// An ETA range widens its column, and the table still fits 120 columns,
// the bar giving way first.
func TestStatus_ETARangeFits(t *testing.T) {
	t.Parallel()
	started := time.Now().Add(-time.Second)
	running := batches.RunStatus{Version: 20260301120100, Name: "orders_price_eur_with_a_rather_long_name_indeed", Mode: batches.ModeAuto,
		Direction: batches.DirectionUp, RunNumber: 1, State: batches.StateRunning, RowsDone: 61_000, RowsEstimated: 100_000_000,
		RowsPerSecond: 19_960, ETASeconds: statusFloat(5000), ETALowSeconds: statusFloat(3599), ETAHighSeconds: statusFloat(9000),
		Rate: 20_000, BatchSize: 1000, StartedAt: &started}
	lines := statusLines(t, []batches.RunStatus{running})
	// The range's cell ends where the header's does.
	cell := "59m59s–2h30m"
	end := len([]rune(strings.SplitAfter(lines[0], "ETA")[0]))
	require.Equal(t, cell, string([]rune(lines[1])[end-len([]rune(cell)):end]))
}

// statusBackfill sets up a database with a table of rows, one backfill file
// over it (with the header lines given) and the run enqueued.
func statusBackfill(t *testing.T, rows int, header string) (map[string]string, *pgxpool.Pool) {
	t.Helper()
	url, pool := testdb.New(t)
	testdb.Exec(t, pool, `CREATE TABLE shown (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO shown (id) SELECT g FROM generate_series(1, `+strconv.Itoa(rows)+`) g;
ANALYZE shown;`)
	dir := t.TempDir()
	writeBackfill(t, dir, "20260101000001_shown.sql", "-- table: shown\n-- key: id\n"+header+
		"UPDATE shown SET n = n + 1 WHERE id BETWEEN @first AND @last;\n")
	env := map[string]string{"DATABASE_URL": url, "BACKFILL_DIR": dir}
	out, _, err := runCLI(t, env, "pending")
	require.NoError(t, err)
	require.Contains(t, out, "enqueued 20260101000001_shown run 1")
	return env, pool
}

// statusWorker runs an in-process worker on the bundle's database until the
// test ends.
func statusWorker(t *testing.T, env map[string]string, pool *pgxpool.Pool) {
	t.Helper()
	reg, err := jobs.NewRegistry(env["BACKFILL_DIR"], nil)
	require.NoError(t, err)
	w, err := jobs.NewWorker(jobs.WorkerConfig{Pool: pool, Registry: reg, Concurrency: 4})
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() { _ = w.Stop(10 * time.Second) })
}

func TestStatus_TableAfterACompletedRun(t *testing.T) {
	t.Parallel()
	env, pool := statusBackfill(t, 3000, "-- batch: 500\n-- partitions: 2\n")
	statusWorker(t, env, pool)
	deadline := time.Now().Add(30 * time.Second)
	for {
		runs, err := batches.ListStatus(context.Background(), pool, nil)
		require.NoError(t, err)
		require.Len(t, runs, 1)
		if runs[0].State == batches.StateCompleted {
			break
		}
		require.True(t, time.Now().Before(deadline), "run still %s", runs[0].State)
		time.Sleep(50 * time.Millisecond)
	}

	out, stderr, err := runCLI(t, env, "status")
	require.NoError(t, err)
	require.Empty(t, stderr)
	t.Logf("\n%s", out)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 2, "a header and one run, nothing under it")
	require.Contains(t, lines[1], "[####################] 100%")
	require.Contains(t, lines[1], " 3000/3000 ", "rows done over the exact count, no ~")
	require.Regexp(t, `^20260101000001 +shown +auto +1 +completed `, lines[1])
	// No ETA for a completed run: its cell is blank.
	end := strings.Index(lines[0], "ETA") + len("ETA")
	require.Equal(t, "   ", lines[1][end-3:end])
	require.Regexp(t, ` 0$`, lines[1], "no failed batches")

	// The machine form has the new fields.
	out, _, err = runCLI(t, env, "status", "--json")
	require.NoError(t, err)
	for _, key := range []string{`"rows_per_second"`, `"eta_seconds": null`, `"partitions_running"`, `"partitions_waiting"`, `"rate"`} {
		require.Contains(t, out, key)
	}
	require.NotContains(t, out, `"held_back"`, "nothing holds back a completed run")
}

func TestStatus_BadInput(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": noStatusDatabase, "BACKFILL_DIR": t.TempDir()}
	for _, args := range [][]string{
		{"status", "--watch", "--json"},
		{"status", "--watch", "--interval", "0s"},
		{"status", "--watch", "--interval", "soon"},
	} {
		_, _, err := runCLI(t, env, args...)
		require.Error(t, err, "%v", args)
		require.Equal(t, cli.ExitUsage, cli.ExitCode(err), "%v: %v", args, err)
	}
}

const noStatusDatabase = "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"

// watchOutput is a bytes.Buffer that a goroutine writes while the test reads.
type watchOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *watchOutput) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *watchOutput) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runWatch starts "status --watch" in a goroutine; the channel gets its error.
func startWatch(ctx context.Context, env map[string]string, out *watchOutput, args ...string) <-chan error {
	done := make(chan error, 1)
	go func() {
		var stderr bytes.Buffer
		done <- run(ctx, append([]string{"status", "--watch"}, args...), envOf(env), out, &stderr)
	}()
	return done
}

// "status --watch" redraws until the only run completes, then returns by
// itself.
func TestStatus_WatchEndsWhenTheRunCompletes(t *testing.T) {
	t.Parallel()
	// 3,000 rows at 1,000 rows/s: about 3 s, several frames.
	env, pool := statusBackfill(t, 3000, "-- batch: 100\n-- partitions: 2\n-- rate: 1000\n")
	statusWorker(t, env, pool)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out watchOutput
	began := time.Now()
	select {
	case err := <-startWatch(ctx, env, &out, "--interval", "250ms"):
		require.NoError(t, err)
	case <-time.After(45 * time.Second):
		t.Fatalf("status --watch did not return once the run completed; output:\n%s", out.String())
	}
	require.NoError(t, ctx.Err(), "watch returned by itself, not by the context")
	text := out.String()
	frames := strings.Split(text, clearScreen)[1:]
	t.Logf("%d frames in %s; the last:\n%s", len(frames), time.Since(began).Round(time.Millisecond), frames[len(frames)-1])
	require.Greater(t, len(frames), 1, "more than one frame")
	require.True(t, strings.HasPrefix(text, clearScreen), "every frame starts by clearing the screen")
	last := frames[len(frames)-1]
	require.Contains(t, last, "completed")
	require.Contains(t, last, "[####################] 100%")
	// Some frame before the last showed the run unfinished.
	unfinished := false
	for _, f := range frames[:len(frames)-1] {
		unfinished = unfinished || strings.Contains(f, " running ") || strings.Contains(f, " pending ")
	}
	require.True(t, unfinished, "an earlier frame shows the run in progress")
}

// Ctrl-C (the context cancelled) ends a watch on a run that does not finish:
// exit 0.
func TestStatus_WatchStopsOnCtrlC(t *testing.T) {
	t.Parallel()
	env, _ := statusBackfill(t, 100, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out watchOutput
	done := startWatch(ctx, env, &out, "--interval", "100ms")
	time.Sleep(700 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("status --watch did not stop when its context was cancelled")
	}
	frames := strings.Split(out.String(), clearScreen)[1:]
	require.Greater(t, len(frames), 1)
	require.Contains(t, frames[len(frames)-1], " pending ")
}
