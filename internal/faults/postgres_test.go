package faults_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/internal/faults"
)

// The counting backfill of these tests: 20,000 rows in batches of 100 over 4
// partitions, at 2,000 rows/s per worker process (two workers: about 5 s of
// work), so that the fault hits it mid-run.
const (
	pgRows = 20000
	pgRate = 2000
)

func TestPostgresRestartFast(t *testing.T) {
	t.Parallel()
	testPostgresRestart(t, faults.Fast)
}

func TestPostgresRestartImmediate(t *testing.T) {
	t.Parallel()
	testPostgresRestart(t, faults.Immediate)
}

// testPostgresRestart restarts the server mid-run: two workers keep going,
// the run resumes and completes, every row exactly once.
func testPostgresRestart(t *testing.T, mode faults.StopMode) {
	s := newScenario(t)
	s.setupCounters(pgRows, pgRate, 5)
	w1, w2 := s.worker("w1", nil), s.worker("w2", nil)

	before := s.waitRows(countVersion, pgRows/5)
	started := time.Now()
	require.NoError(t, s.pg.Restart(mode))
	up := time.Now()
	downFor := up.Sub(started)

	resume := s.resumeAfter(countVersion, up)
	resumed := time.Now()
	requireRunning(t, w1, w2)
	s.waitCompleted(countVersion)
	done := time.Since(up)
	requireRunning(t, w1, w2)
	s.checkExactlyOnce(countVersion)
	stopWorkers(t, w1, w2)
	// What the workers logged from the fault to the first batch after it.
	lines := len(w1.Stderr.Between(started, resumed)) + len(w2.Stderr.Between(started, resumed))
	figure(t, "pg-restart-"+string(mode), "rows_before", before.RowsDone, "restart_took", downFor,
		"resume_after", resume, "completed_after", done, "log_lines", lines)
}

// TestPostgresOutage stops the server for 8 s mid-run: the workers do not
// exit, resume once it is back and complete the run, every row exactly once.
// It logs how many lines each worker wrote during the outage.
func TestPostgresOutage(t *testing.T) {
	t.Parallel()
	// FAULTS_OUTAGE (a duration) measures a longer outage by hand.
	outage := 8 * time.Second
	if d, err := time.ParseDuration(os.Getenv("FAULTS_OUTAGE")); err == nil {
		outage = d
	}
	s := newScenario(t)
	s.setupCounters(pgRows, pgRate, 5)
	w1, w2 := s.worker("w1", nil), s.worker("w2", nil)

	before := s.waitRows(countVersion, pgRows/5)
	down := time.Now()
	require.NoError(t, s.pg.Stop(faults.Fast))
	stopped := time.Now()
	// The outage itself: the workers must stay up all along.
	select {
	case <-w1.Exited():
		t.Fatalf("worker w1 exited during the outage (%v):\n%s", w1.Err(), w1.Stderr.String())
	case <-w2.Exited():
		t.Fatalf("worker w2 exited during the outage (%v):\n%s", w2.Err(), w2.Stderr.String())
	case <-time.After(outage - time.Since(down)):
	}
	require.NoError(t, s.pg.Start())
	up := time.Now()

	lines1, lines2 := w1.Stderr.Between(down, up), w2.Stderr.Between(down, up)
	for _, w := range []struct {
		name  string
		lines []faults.Line
	}{{"w1", lines1}, {"w2", lines2}} {
		var sample []string
		for i, l := range w.lines {
			if i < 3 || i == len(w.lines)-1 {
				sample = append(sample, l.Text)
			}
		}
		t.Logf("worker %s wrote %d log lines during the %s outage; first, last:\n  %s", w.name, len(w.lines),
			up.Sub(down).Round(100*time.Millisecond), strings.Join(sample, "\n  "))
	}
	// A fault is logged once and then summarised every 30 s, not once per
	// attempt: a handful of distinct messages, each once per window.
	windows := int(up.Sub(down)/(30*time.Second)) + 1
	for _, n := range []int{len(lines1), len(lines2)} {
		require.LessOrEqual(t, n, 30*windows, "log lines of a worker during the outage")
	}

	resume := s.resumeAfter(countVersion, up)
	requireRunning(t, w1, w2)
	s.waitCompleted(countVersion)
	done := time.Since(up)
	requireRunning(t, w1, w2)
	s.checkExactlyOnce(countVersion)
	stopWorkers(t, w1, w2)
	figure(t, "pg-outage", "rows_before", before.RowsDone, "stop_took", stopped.Sub(down), "down_for", up.Sub(stopped),
		"resume_after", resume, "completed_after", done,
		"log_lines_w1", len(lines1), "log_lines_w2", len(lines2),
		"log_lines_per_second", fmt.Sprintf("%.1f", float64(len(lines1)+len(lines2))/up.Sub(down).Seconds()))
}
