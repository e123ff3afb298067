package jobs

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/backfill/backfill/batches"
)

// Defaults of the heartbeat: a worker beats every HeartbeatDefault and is
// taken for dead after DeadAfterDefault of silence, so a crashed worker's
// partitions are running again about 10-15 s after the crash.
const (
	HeartbeatDefault = 2 * time.Second
	DeadAfterDefault = batches.WorkerDeadAfterDefault
)

// heartbeat keeps the worker's row in backfill_workers fresh and, on every
// beat, gives the partitions of dead workers to new jobs.
type heartbeat struct {
	pool      *pgxpool.Pool
	client    *river.Client[pgx.Tx]
	info      batches.WorkerInfo
	every     time.Duration
	deadAfter time.Duration
	// limiter's mode is reported with each beat; shares are counted on
	// each beat for it.
	limiter *poolLimiter
	shares  *runShares
	logger  *slog.Logger
	done    chan struct{}
	stopped chan struct{}
}

func (h *heartbeat) start() {
	h.done, h.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(h.stopped)
		ticker := time.NewTicker(h.every)
		defer ticker.Stop()
		for {
			h.beat()
			select {
			case <-h.done:
				return
			case <-ticker.C:
			}
		}
	}()
}

// stop ends the beats and removes the worker's row: it is not dead, it left.
func (h *heartbeat) stop() {
	if h.done == nil {
		return
	}
	close(h.done)
	<-h.stopped
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := batches.ForgetWorker(ctx, h.pool, h.info.ID); err != nil {
		h.logger.Warn("removing the worker's heartbeat", "error", err)
	}
}

func (h *heartbeat) beat() {
	ctx, cancel := context.WithTimeout(context.Background(), h.every)
	defer cancel()
	info := h.info
	info.RateLimit = h.limiter.Mode()
	if err := batches.Heartbeat(ctx, h.pool, info); err != nil {
		h.logger.Warn("heartbeat", "error", err)
		return
	}
	counts, err := batches.CountRunWorkers(ctx, h.pool, h.info.ID, h.deadAfter)
	if err != nil {
		h.logger.Warn("counting the workers that share runs' rates", "error", err)
		return
	}
	h.shares.set(counts)
	lost, err := batches.LostPartitions(ctx, h.pool, h.deadAfter)
	if err != nil {
		h.logger.Warn("looking for partitions of dead workers", "error", err)
		return
	}
	for _, l := range lost {
		if err := h.recover(ctx, l); err != nil && !errors.Is(err, batches.ErrNotOwner) {
			h.logger.Warn("recovering a partition of a dead worker", "run_id", l.RunID, "partition", l.Partition, "error", err)
		}
	}
}

// recover records the loss as a failed attempt of the partition's batch and
// queues a new job after the usual backoff, or fails the partition when its
// attempts are used up. Another worker doing the same at once finds the
// partition no longer owned by the lost job.
func (h *heartbeat) recover(ctx context.Context, l batches.LostPartition) error {
	// The dead worker's transaction may still hold the partition until the
	// server notices: wait briefly, or try again on the next beat.
	return batches.Timeouts{Lock: time.Second}.BeginFunc(ctx, h.pool, func(tx pgx.Tx) error {
		run, err := batches.LoadRun(ctx, tx, l.RunID)
		if err != nil {
			return err
		}
		p := batches.BatchParams{Run: run, Partition: l.Partition, JobID: l.JobID}
		f, err := batches.RecordFailureTx(ctx, tx, p, l)
		if err != nil {
			return err
		}
		h.logger.Error("a worker stopped answering; its partition goes to a new job",
			"version", run.Version, "name", run.Name, "run", run.RunNumber, "partition", l.Partition,
			"dead_worker", l.Worker, "silent", l.Silent.Round(time.Second), "attempt", f.Attempt, "max_attempts", run.Options.MaxAttempts)
		if f.Final {
			return nil
		}
		return requeueTx(ctx, tx, h.client, BatchArgs{RunID: run.ID, Partition: l.Partition, NotBefore: time.Now().Add(retryBackoff(f.Attempt))}, l.JobID)
	})
}
