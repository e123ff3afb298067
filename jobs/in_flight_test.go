package jobs

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
)

// inFlightCount counts the batches in flight the way the metrics' gauge
// does, and how they ended.
type inFlightCount struct {
	noObserver
	now, peak, started, done, failed atomic.Int64
}

func (o *inFlightCount) BatchStarted(*batches.Run) func() {
	o.started.Add(1)
	n := o.now.Add(1)
	for p := o.peak.Load(); n > p && !o.peak.CompareAndSwap(p, n); p = o.peak.Load() {
	}
	return func() {
		o.now.Add(-1)
		o.done.Add(1)
	}
}

func (o *inFlightCount) BatchFailed(*batches.Run) { o.failed.Add(1) }

// gateEnd is how a batch waiting at the gate ends.
type gateEnd int

const (
	gateCommit gateEnd = iota
	gateFail
	gatePanic
)

// gatedGo is a Go backfill whose batches wait at a gate, inside their
// transaction, until the test tells one how to end or their context is
// cancelled.
type gatedGo struct {
	ends                       chan gateEnd
	waiting                    atomic.Int64 // batches at the gate now
	commits, fails, panics, cx atomic.Int64
}

func (*gatedGo) Version() int64     { return 41 }
func (*gatedGo) Name() string       { return "gated" }
func (*gatedGo) Mode() batches.Mode { return batches.ModeAuto }
func (*gatedGo) Options() batches.Options {
	return batches.Options{Table: "counters", Key: "id", BatchSize: 10, Partitions: 3, MaxAttempts: 5, DutyCycle: batches.DutyCycleOff}
}

func (g *gatedGo) ProcessBatch(ctx context.Context, tx pgx.Tx, b batches.Batch) (int64, error) {
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	select {
	case <-ctx.Done():
		g.cx.Add(1)
		return 0, ctx.Err()
	case end := <-g.ends:
		switch end {
		case gateFail:
			g.fails.Add(1)
			return 0, errors.New("the gate fails this batch")
		case gatePanic:
			g.panics.Add(1)
			panic("the gate panics in this batch")
		}
	}
	g.commits.Add(1)
	tag, err := tx.Exec(ctx, `UPDATE counters SET n = n + 1 WHERE id BETWEEN $1 AND $2`, b.First, b.Last)
	return tag.RowsAffected(), err
}

// A batch is in flight from before its transaction begins until it has
// committed or rolled back, however it ends: three partitions worked three
// at a time show three batches in flight while they wait, and every batch
// that ends (committed, failed, panicked, cancelled by a shutdown) leaves
// the count, which is 0 once the worker stopped.
func TestInFlight_CountsBatchesUntilTheyEndEveryWay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	countersTable(t, b, 30)
	gate := &gatedGo{ends: make(chan gateEnd)}
	_, err := b.load(t, gate).Pending(context.Background())
	require.NoError(t, err)
	obs := &inFlightCount{}
	cfg := WorkerConfig{Pool: b.pool, Registry: b.reg, Concurrency: 3, Observer: obs}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	w, err := NewWorker(cfg)
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = w.Stop(time.Second)
		}
	})
	// balanced: every batch the observer counts in flight is at the gate,
	// and the other way round.
	balanced := func() bool { return obs.now.Load() == gate.waiting.Load() }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: never after 20s: %d in flight, %d at the gate, %d started, %d done",
					what, obs.now.Load(), gate.waiting.Load(), obs.started.Load(), obs.done.Load())
			}
		}
	}

	waitFor("three batches in flight", func() bool { return obs.now.Load() == 3 && gate.waiting.Load() == 3 })
	require.EqualValues(t, 3, obs.started.Load())
	require.Zero(t, obs.done.Load())

	gate.ends <- gateFail
	waitFor("the failed batch out of flight", func() bool { return obs.failed.Load() == 1 && obs.done.Load() >= 1 && balanced() })

	gate.ends <- gatePanic
	waitFor("the panicked batch out of flight", func() bool { return obs.done.Load() >= 2 && balanced() })

	gate.ends <- gateCommit
	waitFor("the committed batch out of flight", func() bool { return obs.done.Load() >= 3 && balanced() })

	// The failed partition is back after its backoff, and the third never
	// left: a shutdown cancels what is still at the gate.
	waitFor("batches at the gate again", func() bool { return gate.waiting.Load() >= 2 && balanced() })
	require.LessOrEqual(t, obs.peak.Load(), int64(3), "never more in flight than the concurrency")
	stopped = true
	_ = w.Stop(50 * time.Millisecond)
	waitFor("nothing in flight after the shutdown", func() bool { return obs.now.Load() == 0 && gate.waiting.Load() == 0 })
	require.Equal(t, obs.started.Load(), obs.done.Load())
	require.GreaterOrEqual(t, gate.cx.Load(), int64(2), "batches cancelled by the shutdown")
	require.EqualValues(t, 1, gate.fails.Load())
	require.EqualValues(t, 1, gate.panics.Load())
	require.EqualValues(t, 1, gate.commits.Load())
	require.EqualValues(t, 3, obs.peak.Load())
	t.Logf("%d batches started and ended: 1 committed, 1 failed, 1 panicked, %d cancelled", obs.started.Load(), gate.cx.Load())
}
