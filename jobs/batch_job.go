package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/backfill/backfill/batches"
)

// QueueName is the River queue backfill jobs run in.
const QueueName = "backfills"

// BatchArgs is a job that works one partition of a run: batch after batch
// from its checkpoint, for a short slice of time, then it hands the partition
// to a new job. So a job lasts seconds however long the backfill is.
type BatchArgs struct {
	RunID     int64 `json:"run_id"`
	Partition int   `json:"partition"`
	// NotBefore is when the partition's next batch may start: after a
	// failed batch's backoff.
	NotBefore time.Time `json:"not_before,omitzero"`
	// BatchSize is the size an adaptive run's partition arrived at (0: the
	// run's batch size).
	BatchSize int `json:"batch_size,omitempty"`
	// BusyMS is what the partition's next batch is expected to take: how
	// long the previous one kept the database busy, scaled to the next size.
	// (Jobs queued before PaidMS existed had not paid it yet; they pay it
	// before the next batch.)
	BusyMS int64 `json:"busy_ms,omitempty"`
	// PaidMS is the duty cycle's time the partition owes (negative): its
	// last batch took longer than it had paid.
	PaidMS int64 `json:"paid_ms,omitempty"`
}

// Kind implements river.JobArgs.
func (BatchArgs) Kind() string { return "backfill_batch" }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (BatchArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{Queue: QueueName} }

// BatchWorker works BatchArgs jobs.
type BatchWorker struct {
	river.WorkerDefaults[BatchArgs]

	Pool     *pgxpool.Pool
	Registry *batches.Registry
	Limiter  batches.Limiter
	Logger   *slog.Logger
	Observer Observer
	// Slice is how long one job keeps working batches before it hands over.
	Slice time.Duration
	// Timeouts bound each batch's transaction (a backfill may set its own
	// lock and statement timeouts).
	Timeouts batches.Timeouts
	// Stopping is closed when the process shuts down: jobs hand over after
	// the batch in flight instead of starting another.
	Stopping <-chan struct{}
}

// NextRetry backs off River's own retries (of errors that could not be
// recorded as batch failures) like batch retries.
func (w *BatchWorker) NextRetry(job *river.Job[BatchArgs]) time.Time {
	return time.Now().Add(retryBackoff(job.Attempt))
}

// Work implements river.Worker.
func (w *BatchWorker) Work(ctx context.Context, job *river.Job[BatchArgs]) error {
	// What this job does to the run (start, complete, fail) is recorded as
	// done by this worker.
	if n := len(job.AttemptedBy); n > 0 {
		ctx = batches.WithActor(ctx, "worker "+job.AttemptedBy[n-1])
	}
	run, err := batches.LoadRun(ctx, w.Pool, job.Args.RunID)
	if errors.Is(err, batches.ErrRunNotFound) {
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	if !run.State.Active() {
		return nil // paused, cancelled or finished: nothing to do
	}
	p := batches.BatchParams{Run: run, Partition: job.Args.Partition, JobID: job.ID, Timeouts: w.Timeouts, Monitor: w.Pool}
	log := w.Logger.With("version", run.Version, "name", run.Name, "run", run.RunNumber, "partition", p.Partition)
	if p.Step, err = w.stepFor(run); err != nil {
		return w.fail(ctx, job, p, log, err)
	}
	started, err := batches.MarkStarted(ctx, w.Pool, run.ID)
	if err != nil {
		return err
	}
	if err := batches.FoldThroughput(ctx, w.Pool, run.ID, p.Partition); err != nil {
		return err
	}
	if started {
		log.Info("run started", "direction", run.Direction)
	}

	deadline := time.Now().Add(w.Slice)
	c := carried{
		notBefore: job.Args.NotBefore,
		size:      cmp.Or(job.Args.BatchSize, run.Options.BatchSize),
		busy:      time.Duration(job.Args.BusyMS) * time.Millisecond,
		paid:      time.Duration(job.Args.PaidMS) * time.Millisecond,
	}
	defer func() {
		// Paid for a batch that will not run (the run was paused, the job
		// is stale, or it hands over): give it back. A reservation never
		// outlives its job, so none is lost with a job that ends, nor given
		// back to another worker's budget.
		ctx := context.WithoutCancel(ctx)
		w.giveBack(ctx, run, batches.BudgetTime, int(c.paid/time.Millisecond))
		w.giveBack(ctx, run, batches.BudgetRows, c.paidRows)
	}()
	// set is the run's batch size the partition's size started from: an
	// operator's new one starts it again.
	set := run.Options.BatchSize
	for {
		if err := w.pace(ctx, run, &c, deadline); err != nil {
			switch {
			case errors.Is(err, batches.ErrRunInactive):
				log.Info("job stops: the run is no longer active", "state", run.State)
				return nil
			case errors.Is(err, errHandOver):
				return w.handOver(ctx, job, run, c)
			}
			return err
		}
		if run.Options.BatchSize != set {
			// An operator's new batch size, read while waiting.
			c.size, set = run.Options.BatchSize, run.Options.BatchSize
		}
		p.BatchSize = c.size
		// Within its slice, a batch that leaves the partition unfinished
		// commits with its checkpoint (one round trip less); the job then
		// goes on with the next batch, or hands over at the next pace.
		p.Commit = time.Now().Before(deadline) && !w.stopping()

		started := time.Now()
		finished := false
		res, err := w.batchTx(ctx, p, func(tx pgx.Tx, res *batches.BatchResult) (err error) {
			took, size := time.Since(started), c.size
			c.size, set = nextBatchSize(run.Options, c.size, set, res, took)
			c.busy, c.paid, c.paidRows, c.notBefore = expectedTime(took, size, c.size), c.paid-took, 0, time.Time{}
			if res.Committed {
				return nil
			}
			// The job ends in the batch's own transaction: completed with the
			// partition's last batch, or handed to a new job from the
			// checkpoint when its slice is used up.
			switch {
			case res.PartitionDone || !res.RunState.Active():
				finished = true
				_, err = river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
			case time.Now().After(deadline) || w.stopping():
				finished = true
				err = w.handOverTx(ctx, tx, job, run, c)
			}
			return err
		})
		switch {
		case errors.Is(err, batches.ErrRunInactive):
			log.Info("job stops: the run is no longer active")
			return nil
		case errors.Is(err, batches.ErrHeldBack):
			continue // pace waits until the database is well again
		case errors.Is(err, batches.ErrNotOwner), errors.Is(err, batches.ErrPartitionFinished):
			log.Debug("job stops", "reason", err)
			return nil
		case err != nil:
			return w.fail(ctx, job, p, log, err)
		}
		if c.paid > 0 {
			// The batch took less than it paid: the rest goes back now.
			w.giveBack(ctx, run, batches.BudgetTime, int(c.paid/time.Millisecond))
			c.paid = 0
		}
		// The next batch is cut with the partition's lock, from here.
		p.After = &res.Next
		if res.Batch.Rows > 0 {
			w.Observer.BatchDone(run, res.Batch.Rows, time.Since(started))
			log.Debug("batch done", "first", res.Batch.First, "last", res.Batch.Last, "rows", res.Batch.Rows,
				"rows_affected", res.RowsAffected, "duration", time.Since(started))
		}
		if res.PartitionDone {
			log.Debug("partition done")
			if res.RunState == batches.StateCompleted || res.RunState == batches.StateFailed {
				log.Info("run finished", "state", res.RunState)
			}
		}
		if finished {
			return nil
		}
		if res.Committed && (time.Now().After(deadline) || w.stopping()) {
			// The slice ran out during a batch that committed itself: hand
			// the partition over in a transaction of its own.
			return w.handOver(ctx, job, run, c)
		}
	}
}

// batchTx runs one batch (p) in a transaction of its own, begun with the
// batch's first statements, then, unless the batch committed it itself
// (batches.BatchParams.Commit), then with the batch's result, and commits
// when both succeed; it rolls the transaction back when either fails or
// panics. The observer counts the batch in flight from before the
// transaction begins until it has committed or rolled back, however it
// ends: an error, a panic or a cancelled context.
func (w *BatchWorker) batchTx(ctx context.Context, p batches.BatchParams, then func(pgx.Tx, *batches.BatchResult) error) (*batches.BatchResult, error) {
	defer w.Observer.BatchStarted(p.Run)()
	conn, err := w.Pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	// Released after the rollback below; the pool drops a connection left
	// inside a transaction (a rollback that failed with ctx).
	defer conn.Release()
	over := false
	tx, res, err := batches.ProcessBatch(ctx, conn.Conn(), p)
	defer func() {
		if !over && tx != nil {
			_ = tx.Rollback(ctx)
		}
	}()
	if err == nil {
		err = then(tx, res)
	}
	if err != nil || res.Committed {
		over = err == nil
		return res, err
	}
	over = true
	return res, tx.Commit(ctx)
}

func (w *BatchWorker) stepFor(run *batches.Run) (batches.BatchFunc, error) {
	if run.Source != batches.SourceGo {
		return run.Step(), nil
	}
	def, err := w.Registry.Get(run.Version)
	if err != nil {
		return nil, fmt.Errorf("Go backfill %d_%s is not registered in this worker: %w", run.Version, run.Name, err)
	}
	step := def.Step(run.Direction)
	if step == nil {
		return nil, fmt.Errorf("Go backfill %s cannot be reverted", def.Label())
	}
	return step, nil
}

func (w *BatchWorker) stopping() bool {
	select {
	case <-w.Stopping:
		return true
	default:
		return false
	}
}

// carried is what a partition's job passes on to the next one.
type carried struct {
	// notBefore is a failed batch's backoff (zero: none).
	notBefore time.Time
	// size is the next batch's rows: the run's batch size, or where an
	// adaptive run's batch time led the partition.
	size int
	// busy is what the next batch is expected to take: the last one's time,
	// scaled to the next one's size (0: not known yet).
	busy time.Duration
	// paid is the duty cycle's time the partition paid for its next batch:
	// each batch pays its expected time before it starts, and its real time
	// is taken from paid once it is done. Negative, the batch took longer,
	// and the next one owes it; positive, it took less, and the rest is
	// given back to the budget.
	paid time.Duration
	// paidRows are the rate's rows paid for the next batch.
	paidRows int
}

// handOver ends this job and hands its partition to a new one, in a
// transaction of its own.
func (w *BatchWorker) handOver(ctx context.Context, job *river.Job[BatchArgs], run *batches.Run, c carried) error {
	err := w.Timeouts.BeginFunc(ctx, w.Pool, func(tx pgx.Tx) error {
		return w.handOverTx(ctx, tx, job, run, c)
	})
	if errors.Is(err, batches.ErrNotOwner) {
		return nil
	}
	return err
}

// longWait is the wait beyond which a handed-over job is scheduled rather
// than made available at once to sleep: River's scheduler adds up to five
// seconds, which matters only for short waits.
const longWait = 5 * time.Second

// handOverTx queues the partition's next job and makes it the partition's
// owner, and completes this job, all in tx.
func (w *BatchWorker) handOverTx(ctx context.Context, tx pgx.Tx, job *river.Job[BatchArgs], run *batches.Run, c carried) error {
	next := BatchArgs{RunID: run.ID, Partition: job.Args.Partition, NotBefore: c.notBefore,
		BusyMS: c.busy.Milliseconds(), PaidMS: min(c.paid, 0).Milliseconds()}
	if run.Options.Adaptive() {
		next.BatchSize = c.size
	}
	if err := requeueTx(ctx, tx, river.ClientFromContext[pgx.Tx](ctx), next, job.ID); err != nil {
		return err
	}
	_, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
	return err
}

// requeueTx queues a new job for a partition, to start no earlier than
// args.NotBefore, and makes it the owner in place of job from (0: none). It
// returns batches.ErrNotOwner when from no longer owns the partition.
func requeueTx(ctx context.Context, tx pgx.Tx, client *river.Client[pgx.Tx], args BatchArgs, from int64) error {
	opts := &river.InsertOpts{}
	if time.Until(args.NotBefore) > longWait {
		opts.ScheduledAt = args.NotBefore
	}
	next, err := client.InsertTx(ctx, tx, args, opts)
	if err != nil {
		return fmt.Errorf("jobs: queueing the next job of partition %d of run %d: %w", args.Partition, args.RunID, err)
	}
	return batches.AssignJobTx(ctx, tx, args.RunID, args.Partition, from, next.Job.ID)
}

// fail handles a batch that failed: the batch rolled back, and the failure
// is recorded with the partition. The batch is tried again from the same
// checkpoint by a new job after a backoff (1s, 2s, 4s ... 5 minutes), until
// the backfill's attempts are used up; then the partition is failed and
// waits for "enqueue retry". River's own retries, which would wait for its
// scheduler, are left for errors that could not be recorded.
func (w *BatchWorker) fail(ctx context.Context, job *river.Job[BatchArgs], p batches.BatchParams, log *slog.Logger, failure error) error {
	if ctx.Err() != nil {
		if w.stopping() {
			return failure // shut down mid-batch: not the batch's fault; River runs the job again
		}
		// The job timed out: that is a failed attempt like any other, and
		// is recorded on a context of its own.
		var be *batches.BatchError
		if errors.As(failure, &be) {
			be.Err = fmt.Errorf("the job reached its timeout: %w", be.Err)
		} else {
			failure = fmt.Errorf("the job reached its timeout: %w", failure)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
	}
	w.Observer.BatchFailed(p.Run)
	var f *batches.Failure
	err := w.Timeouts.BeginFunc(ctx, w.Pool, func(tx pgx.Tx) error {
		var err error
		if f, err = batches.RecordFailureTx(ctx, tx, p, failure); err != nil || f.Final {
			return err
		}
		return w.handOverTx(ctx, tx, job, p.Run, carried{notBefore: time.Now().Add(retryBackoff(f.Attempt)), size: p.BatchSize})
	})
	switch {
	case errors.Is(err, batches.ErrNotOwner):
		return nil
	case err != nil:
		log.Error("recording a failed batch", "error", err, "batch_error", failure.Error())
		return failure
	}
	attrs := []any{"attempt", f.Attempt, "max_attempts", p.Run.Options.MaxAttempts, "error", failure.Error()}
	if !f.Final {
		log.Error("batch failed, will retry", attrs...)
		return nil
	}
	log.Error("batch failed after its last attempt", attrs...)
	if f.RunState == batches.StateFailed {
		log.Info("run finished", "state", f.RunState)
	}
	return river.JobCancel(failure)
}

// retryBackoff is the wait before try attempt+1 of a batch.
func retryBackoff(attempt int) time.Duration {
	backoff := min(time.Second<<min(max(attempt-1, 0), 9), 5*time.Minute)
	return backoff + time.Duration(rand.Int64N(int64(backoff)/10+1))
}

// stateCheckInterval is how often a waiting job reads its run's state and
// throttle, so that pause, cancel and a new rate take effect within about a
// second.
const stateCheckInterval = time.Second

// Ends of a wait other than its time.
var (
	// errStopping: the worker shuts down.
	errStopping = errors.New("jobs: the worker is stopping")
	// errHandOver: the wait would outlast the job's slice, or the worker
	// stops; a new job waits instead.
	errHandOver = errors.New("jobs: the partition goes to a new job")
	// errThrottled: an operator changed the run's rate or batch size.
	errThrottled = errors.New("jobs: the run's throttle changed")
)

// pace waits until the partition's next batch may start: after a failed
// batch's backoff, while no health signal holds the run back, once the rate
// limiter took the next batch's rows (c.size: a batch pays before it runs,
// for as many rows as it may have, so the pool never gets ahead of its rate
// by more than the limiter's burst), and once the duty cycle took the time
// the batch is expected to take (see dutyOwed). The limiter serves the
// partitions in the order they ask, so none starves. It returns
// errHandOver when the backoff or the database's health keeps it waiting
// to the end of the job's slice (deadline), when the budget would keep it
// waiting beyond three quarters of the job's timeout (see take), or when
// the worker stops, and batches.ErrRunInactive when the run is paused or
// cancelled meanwhile.
func (w *BatchWorker) pace(ctx context.Context, run *batches.Run, c *carried, deadline time.Time) error {
	// The backoff first: a new throttle does not shorten it.
	for {
		err := w.waitWithin(ctx, run, c.notBefore, deadline)
		if !errors.Is(err, errThrottled) {
			if err != nil {
				return err
			}
			break
		}
	}
	// Then the database's health: held back, never failed.
	for run.HeldBack() != nil {
		err := w.waitWithin(ctx, run, time.Now().Add(stateCheckInterval), deadline)
		if err != nil && !errors.Is(err, errThrottled) {
			return err
		}
		if err := batches.RefreshRun(ctx, w.Pool, run); err != nil {
			return err
		}
		if !run.State.Active() {
			return batches.ErrRunInactive
		}
	}
	if owed := c.size - c.paidRows; owed > 0 {
		took, err := w.take(ctx, run, batches.BudgetRows, owed)
		if took {
			c.paidRows += owed
		}
		if err != nil {
			return err
		}
	}
	if run.Options.DutyCycle <= 0 {
		c.paid = 0 // nothing is owed, nor paid ahead, while the run has none
	}
	if owed := dutyOwed(c); owed > 0 {
		took, err := w.take(ctx, run, batches.BudgetTime, owed)
		if took {
			c.paid += time.Duration(owed) * time.Millisecond
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// giveBack returns n units the partition paid and did not use to the run's
// budget kind, for any partition to use now: the time its last batch paid
// and did not take, rather than have it spent later on top of the duty
// cycle, or what it paid for a batch that will not run. Best effort: what
// is not given back only slows the run down.
func (w *BatchWorker) giveBack(ctx context.Context, run *batches.Run, kind string, n int) {
	if perSecond := perSecondOf(run.Options, kind); n > 0 && perSecond > 0 {
		_, _, _ = w.Limiter.Reserve(ctx, batches.Budget{RunID: run.ID, Kind: kind}, perSecond, -n, burstOf(run.Options, kind))
	}
}

// dutyOwed is what the partition's next batch pays the duty cycle before it
// starts, in milliseconds: the time it is expected to take (c.busy) plus
// what the last batch took beyond what it paid. A partition's first batch,
// whose time is not known yet, pays once it is done, with the next.
func dutyOwed(c *carried) int {
	owed := c.busy - c.paid
	if owed <= 0 {
		return 0
	}
	return int((owed + time.Millisecond - 1) / time.Millisecond)
}

// expectedTime is what a batch of next rows is expected to take after one
// of size rows took took: an adaptive run's batches grow (up to twice at
// once) while they are short of its batch time, and a batch that paid only
// its last one's time would keep the partition ahead of its duty cycle.
func expectedTime(took time.Duration, size, next int) time.Duration {
	if size <= 0 || next == size {
		return took
	}
	return time.Duration(float64(took) * float64(next) / float64(size))
}

// perSecondOf is how many units of the run's budget kind come in a second:
// its rate in rows, or its duty cycle in milliseconds (0 or less: no limit).
func perSecondOf(o batches.Options, kind string) float64 {
	if kind == batches.BudgetTime {
		return 1000 * o.DutyCycle
	}
	return o.Rate
}

// burstOf is how many units of the run's budget kind may be reserved ahead
// of its rate: two batches' rows, or one batch's expected time.
func burstOf(o batches.Options, kind string) int {
	if kind == batches.BudgetTime {
		return int(cmp.Or(o.BatchTime, batches.BatchTimeDefault) / time.Millisecond)
	}
	return batches.RateBurstBatches * o.BatchSize
}

// take reserves n units of the run's budget kind (at the run's rate, or
// its duty cycle in milliseconds per second) and waits until they are
// there; it says whether it took them (not when the run has no such
// limit). At a new throttle it gives them back and reserves them again at
// the new rate; when the run is paused, or the worker stops, it gives them
// back. It waits beyond the job's slice (a reservation given back and
// asked again would lose its place, and one longer than a slice would
// never be served), but not beyond three quarters of the job's timeout: a
// longer wait gives them back and returns errHandOver, for the
// partition's next job to ask again.
func (w *BatchWorker) take(ctx context.Context, run *batches.Run, kind string, n int) (bool, error) {
	for {
		perSecond := perSecondOf(run.Options, kind)
		if perSecond <= 0 {
			return false, nil
		}
		wait, cancel, err := w.Limiter.Reserve(ctx, batches.Budget{RunID: run.ID, Kind: kind}, perSecond, n, burstOf(run.Options, kind))
		if err != nil || wait == 0 {
			return err == nil, err
		}
		if kind == batches.BudgetRows {
			w.Observer.RateLimited(run, wait)
		}
		ready := time.Now().Add(wait)
		if limit, ok := ctx.Deadline(); ok && ready.After(limit.Add(-w.Slice)) {
			cancel()
			return false, errHandOver
		}
		if err = w.waitWithin(ctx, run, ready, ready); err == nil {
			return true, nil
		}
		cancel()
		if !errors.Is(err, errThrottled) {
			return false, err
		}
	}
}

// nextBatchSize is the size of a partition's next batch after res, which
// took took, and the run's batch size it follows (set): a fixed run's
// batch size, or an adaptive run's size aimed at its batch time, started
// again from the run's batch size when an operator changed that.
func nextBatchSize(o batches.Options, size, set int, res *batches.BatchResult, took time.Duration) (int, int) {
	switch {
	case !o.Adaptive():
		return o.BatchSize, o.BatchSize
	case o.BatchSize != set:
		return o.BatchSize, o.BatchSize
	case res.PartitionDone || res.Batch.Rows < int64(size):
		return size, set // a short batch says little about a full one
	}
	return o.NextBatchSize(size, took), set
}

// waitWithin waits until t like waitUntil, but no longer than deadline: it
// returns errHandOver when it reaches deadline before t, or the worker stops.
func (w *BatchWorker) waitWithin(ctx context.Context, run *batches.Run, t, deadline time.Time) error {
	if w.stopping() {
		return errHandOver
	}
	err := w.waitUntil(ctx, run, earliest(t, deadline))
	switch {
	case errors.Is(err, errStopping):
		return errHandOver
	case err == nil && t.After(deadline):
		return errHandOver
	}
	return err
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// waitUntil sleeps until t, returning early with batches.ErrRunInactive
// when the run is paused or cancelled meanwhile, errThrottled when its rate
// or batch size changes, and errStopping when the worker shuts down.
func (w *BatchWorker) waitUntil(ctx context.Context, run *batches.Run, t time.Time) error {
	for {
		d := time.Until(t)
		if d <= 0 {
			return nil
		}
		timer := time.NewTimer(min(d, stateCheckInterval))
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-w.Stopping:
			timer.Stop()
			return errStopping
		case <-timer.C:
		}
		if d <= stateCheckInterval {
			return nil
		}
		before := run.Options
		if err := batches.RefreshRun(ctx, w.Pool, run); err != nil {
			return err
		}
		switch {
		case !run.State.Active():
			return batches.ErrRunInactive
		case run.Options.Rate != before.Rate || run.Options.BatchSize != before.BatchSize || run.Options.DutyCycle != before.DutyCycle:
			return errThrottled
		}
	}
}
