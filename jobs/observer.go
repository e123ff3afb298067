package jobs

import (
	"time"

	"github.com/backfill/backfill/batches"
)

// Observer is told what the batch workers do, for metrics. Its methods are
// called from many goroutines and must be quick.
type Observer interface {
	// BatchStarted: a batch's transaction is about to begin. The batch is
	// in flight until done is called, once, when the transaction has
	// committed or rolled back, whatever ended it (an error, a panic, a
	// cancelled context); BatchDone or BatchFailed may follow.
	BatchStarted(run *batches.Run) (done func())
	// BatchDone: a batch of rows keys was committed after taking d.
	BatchDone(run *batches.Run, rows int64, d time.Duration)
	// BatchFailed: a batch failed and rolled back (it may be retried).
	BatchFailed(run *batches.Run)
	// RateLimited: a job waited d for the run's rate limit.
	RateLimited(run *batches.Run, d time.Duration)
	// Health: the heartbeat read the run's health signals.
	Health(run *batches.Run, h batches.Health)
}

type noObserver struct{}

func (noObserver) BatchStarted(*batches.Run) func()             { return func() {} }
func (noObserver) BatchDone(*batches.Run, int64, time.Duration) {}
func (noObserver) BatchFailed(*batches.Run)                     {}
func (noObserver) RateLimited(*batches.Run, time.Duration)      {}
func (noObserver) Health(*batches.Run, batches.Health)          {}
