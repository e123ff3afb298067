package jobs

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// A run's page reads its whole history: every change of state with who made
// it, every failed batch with its SQLSTATE and attempt, its partitions with
// their owners, and its rows per second over its life. Old per-second
// buckets fold into minutes, and the history of runs finished longer ago
// than the retention is pruned.
func TestRunHistory_TimelineFailuresPartitionsChartAndRetention(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testdb.Exec(t, b.pool, `
CREATE TABLE hist (id bigint PRIMARY KEY, parts int NOT NULL, n int NOT NULL DEFAULT 0);
INSERT INTO hist (id, parts) SELECT g, CASE WHEN g = 1500 THEN 0 ELSE 1 END FROM generate_series(1, 2000) g;
ANALYZE hist;`)
	b.writeFile(t, "9_hist.sql", `-- table: hist
-- key: id
-- batch: 100
-- partitions: 2
-- attempts: 2
-- duty_cycle: off
UPDATE hist SET n = n + 1 / parts WHERE id BETWEEN @first AND @last;
`)
	ann := batches.WithActor(context.Background(), "ann@ops1")
	_, err := b.load(t).Pending(ann)
	require.NoError(t, err)
	b.startWorker(t, WorkerConfig{Concurrency: 2})
	b.waitState(t, 9, batches.StateFailed, 60*time.Second)

	testdb.Exec(t, b.pool, `UPDATE hist SET parts = 1 WHERE parts = 0`)
	bob := batches.WithActor(context.Background(), "bob@ops2")
	_, _, err = b.enq.Retry(bob, 9)
	require.NoError(t, err)
	b.waitState(t, 9, batches.StateCompleted, 60*time.Second)

	d, err := batches.LoadRunDetail(context.Background(), b.pool, 9, 1)
	require.NoError(t, err)
	require.Equal(t, batches.StateCompleted, d.Status.State)

	// The timeline: who did what, in order, each with its states.
	type step struct{ action, actor, to string }
	var timeline []step
	for _, e := range d.Events {
		var detail struct {
			To string `json:"to"`
		}
		require.NoError(t, json.Unmarshal(e.Detail, &detail), "%s", e.Detail)
		actor := e.Actor
		if strings.HasPrefix(actor, "worker ") {
			actor = "worker"
		}
		timeline = append(timeline, step{e.Action, actor, detail.To})
		require.WithinDuration(t, time.Now(), e.At, time.Minute)
	}
	require.Equal(t, []step{
		{"enqueue", "ann@ops1", ""},
		{"start", "worker", "running"},
		{"fail", "worker", "failed"},
		{"retry", "bob@ops2", "running"},
		{"complete", "worker", "completed"},
	}, timeline)
	for i := 1; i < len(d.Events); i++ {
		require.False(t, d.Events[i].At.Before(d.Events[i-1].At), "oldest first")
	}

	// Both tries of the failing batch, newest first, with SQLSTATE, key
	// range and attempt.
	require.Equal(t, int64(2), d.FailuresTotal)
	require.Len(t, d.Failures, 2)
	for i, want := range []struct {
		attempt int
		final   bool
	}{{2, true}, {1, false}} {
		var f struct {
			Partition   int    `json:"partition"`
			Attempt     int    `json:"attempt"`
			MaxAttempts int    `json:"max_attempts"`
			Final       bool   `json:"final"`
			SQLState    string `json:"sqlstate"`
			Message     string `json:"message"`
			FirstKey    string `json:"first_key"`
			LastKey     string `json:"last_key"`
		}
		require.NoError(t, json.Unmarshal(d.Failures[i].Detail, &f))
		require.Equal(t, want.attempt, f.Attempt)
		require.Equal(t, want.final, f.Final)
		require.Equal(t, 2, f.MaxAttempts)
		require.Equal(t, "22012", f.SQLState)
		require.Contains(t, f.Message, "division by zero")
		require.Equal(t, "1401", f.FirstKey)
		require.Equal(t, "1500", f.LastKey)
		require.Equal(t, 1, f.Partition)
		require.True(t, strings.HasPrefix(d.Failures[i].Actor, "worker "), d.Failures[i].Actor)
	}

	// Partitions: done, checkpointed at their last key, owned by a job a
	// worker took.
	require.Len(t, d.Partitions, 2)
	var rows int64
	for _, p := range d.Partitions {
		require.Equal(t, "done", p.State)
		require.NotNil(t, p.Worker)
		require.NotNil(t, p.CursorKey)
		rows += p.RowsDone
	}
	require.Equal(t, int64(2000), rows)
	require.Equal(t, "2000", *d.Partitions[1].CursorKey)

	// The definition as enqueued.
	require.Contains(t, d.Definition.Statement, "UPDATE hist SET n = n + 1 / parts")
	require.Equal(t, d.Status.Checksum, d.Definition.Checksum)
	require.True(t, strings.HasSuffix(d.Definition.Source, "9_hist.sql"), d.Definition.Source)
	require.Equal(t, "bigint", d.Definition.KeyType)

	// The chart adds up to the rows done.
	require.NotEmpty(t, d.Throughput)
	require.Equal(t, int64(2000), chartRows(d))

	// Buckets older than ten minutes fold into minutes, one partition at a
	// time, and the chart then counts in whole minutes.
	runID := queryInt(t, b.pool, `SELECT id FROM backfill_runs WHERE version = 9`)
	testdb.Exec(t, b.pool, `UPDATE backfill_throughput SET second = second - interval '1 hour' WHERE run_id = `+itoa(int(runID)))
	require.NoError(t, batches.FoldThroughput(context.Background(), b.pool, runID, 0))
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM backfill_throughput WHERE partition = 0`))
	require.NotZero(t, queryInt(t, b.pool, `SELECT count(*) FROM backfill_throughput WHERE partition = 1`))
	require.NoError(t, batches.FoldThroughput(context.Background(), b.pool, runID, 1))
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM backfill_throughput`))
	require.Equal(t, int64(2000), queryInt(t, b.pool, `SELECT sum(rows) FROM backfill_throughput_minutes`))
	d, err = batches.LoadRunDetail(context.Background(), b.pool, 9, 1)
	require.NoError(t, err)
	require.Zero(t, d.BucketSeconds%60, "%d", d.BucketSeconds)
	require.Equal(t, int64(2000), chartRows(d))

	// A second run, enqueued and cancelled from another desk.
	carol := batches.WithActor(context.Background(), "carol@ops3")
	_, err = b.enq.Run(carol, 9, true)
	require.NoError(t, err)
	_, err = b.enq.Cancel(carol, 9)
	require.NoError(t, err)
	d2, err := batches.LoadRunDetail(context.Background(), b.pool, 9, 2)
	require.NoError(t, err)
	require.Equal(t, "enqueue", d2.Events[0].Action)
	require.Equal(t, "carol@ops3", d2.Events[0].Actor)
	last := d2.Events[len(d2.Events)-1]
	require.Equal(t, "cancel", last.Action)
	require.Equal(t, "carol@ops3", last.Actor)
	_, err = batches.LoadRunDetail(context.Background(), b.pool, 9, 3)
	require.ErrorIs(t, err, batches.ErrRunNotFound)

	// Retention: run 1 finished 91 days ago loses its history, run 2 keeps it.
	testdb.Exec(t, b.pool, `UPDATE backfill_runs SET finished_at = now() - interval '91 days' WHERE id = `+itoa(int(runID)))
	history := queryInt(t, b.pool, `SELECT (SELECT count(*) FROM backfill_events WHERE run_id = $1) + (SELECT count(*) FROM backfill_throughput_minutes WHERE run_id = $1)`, runID)
	require.Equal(t, int64(len(d.Events)+len(d.Failures)), queryInt(t, b.pool, `SELECT count(*) FROM backfill_events WHERE run_id = $1`, runID))
	n, err := batches.PruneHistory(context.Background(), b.pool, batches.EventRetentionDefault)
	require.NoError(t, err)
	require.Equal(t, history, n)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM backfill_events WHERE run_id = $1`, runID))
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM backfill_throughput_minutes WHERE run_id = $1`, runID))
	require.Equal(t, int64(len(d2.Events)), queryInt(t, b.pool, `SELECT count(*) FROM backfill_events WHERE run_id <> $1`, runID))
	require.Equal(t, int64(1), queryInt(t, b.pool, `SELECT count(*) FROM backfill_runs WHERE id = $1`, runID), "the run itself stays")
}

// chartRows adds up the rows the chart shows.
func chartRows(d *batches.RunDetail) int64 {
	var rows float64
	for _, p := range d.Throughput {
		rows += p.RowsPerSecond * float64(d.BucketSeconds)
	}
	return int64(rows + 0.5)
}

// Every worker prunes the history of runs finished longer ago than its
// retention on its first heartbeat (then hourly); a negative retention
// keeps it.
func TestRunHistory_WorkersPruneItOnTheirHeartbeat(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE old (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO old (id) SELECT g FROM generate_series(1, 100) g; ANALYZE old;`)
	b.writeFile(t, "5_old.sql", "-- table: old\n-- key: id\n-- duty_cycle: off\nUPDATE old SET n = n + 1 WHERE id BETWEEN @first AND @last;\n")
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)
	// Workers this test stops itself (startWorker's would stop them again).
	start := func(cfg WorkerConfig) *Worker {
		cfg.Pool, cfg.Registry = b.pool, b.reg
		w, err := NewWorker(cfg)
		require.NoError(t, err)
		require.NoError(t, w.Start(context.Background()))
		return w
	}
	keeper := start(WorkerConfig{EventRetention: -1})
	b.waitState(t, 5, batches.StateCompleted, 30*time.Second)
	require.NoError(t, keeper.Stop(10*time.Second))
	testdb.Exec(t, b.pool, `UPDATE backfill_runs SET finished_at = now() - interval '2 hours'`)
	events := queryInt(t, b.pool, `SELECT count(*) FROM backfill_events`)
	require.GreaterOrEqual(t, events, int64(3), "enqueue, start, complete")

	// A worker that keeps history forever leaves it.
	keeper = start(WorkerConfig{EventRetention: -1, Heartbeat: 50 * time.Millisecond})
	time.Sleep(300 * time.Millisecond) // several beats
	require.Equal(t, events, queryInt(t, b.pool, `SELECT count(*) FROM backfill_events`))
	require.NoError(t, keeper.Stop(10*time.Second))

	// One with an hour's retention deletes it at its first beat.
	b.startWorker(t, WorkerConfig{EventRetention: time.Hour, Heartbeat: 50 * time.Millisecond})
	deadline := time.Now().Add(10 * time.Second)
	for queryInt(t, b.pool, `SELECT count(*) FROM backfill_events`) > 0 {
		require.True(t, time.Now().Before(deadline), "the history of a run finished 2 hours ago is still there")
		time.Sleep(20 * time.Millisecond)
	}
	require.Equal(t, int64(1), queryInt(t, b.pool, `SELECT count(*) FROM backfill_runs`), "the run itself stays")
}
