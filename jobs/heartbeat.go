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
// beat, gives the partitions of dead workers to new jobs, counts the
// workers sharing each run's rate, and checks the runs' health signals.
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
	// appName is the application_name of the backfill's own sessions,
	// left out of the health signals' readings.
	appName  string
	observer Observer
	// held remembers why this worker last saw each run held back, to log
	// the changes once.
	held map[int64]string
	// retention is how long finished runs' history is kept (negative:
	// forever); pruned is when this worker last pruned it.
	retention time.Duration
	pruned    time.Time
	logger    *slog.Logger
	done      chan struct{}
	stopped   chan struct{}
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
	h.checkHealth(ctx)
	h.pruneHistory(ctx)
	lost, err := batches.LostPartitions(ctx, h.pool, h.deadAfter)
	if err != nil {
		h.logger.Warn("looking for partitions of dead workers", "error", err)
		return
	}
	// Failing a lost partition is recorded as done by this worker.
	ctx = batches.WithActor(ctx, "worker "+h.info.ID)
	for _, l := range lost {
		if err := h.recover(ctx, l); err != nil && !errors.Is(err, batches.ErrNotOwner) {
			h.logger.Warn("recovering a partition of a dead worker", "run_id", l.RunID, "partition", l.Partition, "error", err)
		}
	}
}

// pruneEvery is how often each worker deletes the history of runs finished
// longer ago than the retention: often enough that the tables never hold
// much more than it, rarely enough to cost nothing.
const pruneEvery = time.Hour

func (h *heartbeat) pruneHistory(ctx context.Context) {
	if h.retention < 0 || time.Since(h.pruned) < pruneEvery {
		return
	}
	n, err := batches.PruneHistory(ctx, h.pool, h.retention)
	if err != nil {
		h.logger.Warn("pruning the history of finished runs", "error", err)
		return
	}
	h.pruned = time.Now()
	if n > 0 {
		h.logger.Info("pruned the history of runs finished long ago", "rows", n, "retention", h.retention)
	}
}

// checkHealth reads the health signals of every active run and stores them
// with the run, where its batches look before they start (every live worker
// checks; a reading younger than half a beat is kept).
func (h *heartbeat) checkHealth(ctx context.Context) {
	runs, err := batches.ActiveRuns(ctx, h.pool)
	if err != nil || len(runs) == 0 {
		if err != nil {
			h.logger.Warn("reading the runs whose health to check", "error", err)
		}
		return
	}
	load, err := batches.ReadServerLoad(ctx, h.pool, h.appName)
	if err != nil {
		h.logger.Warn("reading the database's load", "error", err)
		return
	}
	if h.held == nil {
		h.held = map[int64]string{}
	}
	for _, run := range runs {
		health := batches.CheckHealth(ctx, h.pool, run, load)
		h.observer.Health(run, health)
		if err := batches.StoreHealth(ctx, h.pool, run.ID, health, h.every/2); err != nil {
			h.logger.Warn("storing a run's health", "error", err)
		}
		// Logged when what holds the run changes, not its values.
		why := holdingKey(health)
		if why != h.held[run.ID] {
			log := h.logger.With("version", run.Version, "name", run.Name, "run", run.RunNumber)
			if why != "" {
				log.Info("run held back: the database is under strain", "reason", health.String())
			} else {
				log.Info("run no longer held back")
			}
			h.held[run.ID] = why
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

// holdingKey names the signals that hold a run back, with their details.
func holdingKey(h batches.Health) string {
	var key string
	for _, s := range h.Holding() {
		key += s.Name + "(" + s.Detail + ") "
	}
	return key
}
