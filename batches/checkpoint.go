package batches

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Outcomes of ProcessBatchTx that end a job without an error.
var (
	// ErrNotOwner: another job owns the partition now (this one is stale).
	ErrNotOwner = errors.New("batches: job no longer owns the partition")
	// ErrPartitionFinished: the partition is done or failed already.
	ErrPartitionFinished = errors.New("batches: partition already finished")
	// ErrRunInactive: the run is paused, cancelled or finished.
	ErrRunInactive = errors.New("batches: run is not active")
)

// BatchParams name the partition a job works and how.
type BatchParams struct {
	Run       *Run
	Partition int
	// JobID is the fencing token: the batch runs only while the partition's
	// job_id is this job.
	JobID int64
	Step  BatchFunc
	// BatchSize is the most rows of this batch (0: the run's BatchSize); an
	// adaptive run's job passes the size it arrived at.
	BatchSize int
	// Timeouts bound the batch's transaction; zero fields take the defaults,
	// and the run's own lock and statement timeouts win.
	Timeouts Timeouts
	// Monitor, when set, is asked who blocks a batch that waits long on a
	// lock (another connection than the batch's).
	Monitor Querier
	// After, when set, is where the caller expects the partition to stand:
	// the Next of its previous batch. The next batch is then cut in the same
	// round trip as the partition is locked (and cut again should the
	// partition stand elsewhere).
	After *Position
	// Commit lets a batch that leaves its partition unfinished send its
	// checkpoint and COMMIT in one round trip. BatchResult.Committed then
	// says tx is over: the caller must neither commit nor roll it back, nor
	// use it again (its connection is idle and may be released).
	Commit bool
}

// Position is where a partition stands: its checkpoint (nil before its
// first batch) and its last key (nil: the end of the key space).
type Position struct {
	Cursor, Upper *string
}

func (p *Position) at(cursor, upper *string) bool {
	same := func(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
	return p != nil && same(p.Cursor, cursor) && same(p.Upper, upper)
}

// BatchResult says what one call of ProcessBatchTx did.
type BatchResult struct {
	Batch        Batch
	RowsAffected int64
	// PartitionDone is true when no keys are left in the partition.
	PartitionDone bool
	// RunState is the run's state after the batch (completed when this batch
	// finished its last partition).
	RunState State
	// Next is where the partition stands after the batch.
	Next Position
	// Committed is true when the batch committed tx itself (see
	// BatchParams.Commit).
	Committed bool
}

// BatchError is a batch that failed, with its key range.
type BatchError struct {
	Batch Batch
	Err   error
	// Blockers are the sessions whose locks the batch was waiting for.
	Blockers []int32
}

func (e *BatchError) Error() string {
	s := fmt.Sprintf("batch %s..%s of partition %d: %s", e.Batch.First, e.Batch.Last, e.Batch.Partition, describeError(e.Err))
	if b := describeBlockers(e.Blockers); b != "" {
		s += " (" + b + ")"
	}
	return s
}

// ErrKeysOutOfRange is a batch whose keys are not after the partition's
// checkpoint or not within its range: the partition would never advance, so
// it fails at once instead of looping. The where condition is the usual
// cause (it is checked when the file is read; this is the safety net).
var ErrKeysOutOfRange = errors.New("batches: the next batch's keys are outside the partition's remaining range")

func (e *BatchError) Unwrap() error { return e.Err }

// sqlStateError shows a server error as "SQLSTATE code: message" and still
// unwraps to it, so callers can reach the *pgconn.PgError.
type sqlStateError struct{ err error }

func (e sqlStateError) Error() string { return describeError(e.err) }
func (e sqlStateError) Unwrap() error { return e.err }

func withSQLState(err error) error { return sqlStateError{err} }

// describeError gives a server error's SQLSTATE with its message.
func describeError(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return fmt.Sprintf("SQLSTATE %s: %s", pgErr.Code, pgErr.Message)
	}
	return err.Error()
}

// ProcessBatchTx runs the partition's next batch and writes its checkpoint in
// tx. Commit tx to keep both, roll it back to keep neither: a batch is never
// applied without its checkpoint, nor checkpointed without being applied.
//
// It locks the partition row for the life of tx, so concurrent jobs of one
// partition serialise and each sees the other's checkpoint. A failing step is
// returned as *BatchError; the caller must roll tx back.
func ProcessBatchTx(ctx context.Context, tx pgx.Tx, p BatchParams) (*BatchResult, error) {
	return processBatch(ctx, &tx, nil, p)
}

// ProcessBatch is ProcessBatchTx in a transaction of its own on conn, begun
// by the batch's first round trip (pgx.Batch.BeginTx): one round trip fewer
// than Begin, then ProcessBatchTx. It returns that transaction, to be
// finished like ProcessBatchTx's (committed or rolled back, unless
// BatchResult.Committed), also with an error. A panic of the step rolls it
// back before it goes on.
func ProcessBatch(ctx context.Context, conn *pgx.Conn, p BatchParams) (tx pgx.Tx, res *BatchResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			if tx != nil {
				_ = tx.Rollback(ctx)
			}
			panic(r)
		}
	}()
	res, err = processBatch(ctx, &tx, conn, p)
	return tx, res, err
}

// processBatch runs a batch in *txp, or, when *txp is nil, in a
// transaction it begins on conn with its first statements and puts in *txp.
func processBatch(ctx context.Context, txp *pgx.Tx, conn *pgx.Conn, p BatchParams) (*BatchResult, error) {
	run := p.Run
	started := time.Now()
	timeouts := p.Timeouts.WithDefaults().ForRun(run.Options)
	var (
		pid           int32
		cursor, upper *string
		state         string
		jobID         *int64
		runState      State
		throttle      Throttle
		health        *Health
		pending       tally
		second        time.Time
	)
	if run.keyset == nil {
		run.keyset = newKeysetQueries(run.Options.ForDirection(run.Direction))
	}
	batchSize := func() int { return cmp.Or(max(p.BatchSize, 0), run.Options.BatchSize) }
	size := batchSize()
	// One round trip: the transaction's start and bounds, the partition's
	// lock and, when the caller knows where the partition stands, the next
	// batch's cut (read-only, so cutting in vain costs nothing).
	b := &pgx.Batch{}
	tx := *txp
	if tx == nil {
		b.BeginTx(pgx.TxOptions{})
	}
	timeouts.queue(b, &pid)
	b.Queue(inSchema(`
SELECT bp.cursor_key, bp.upper_key, bp.state, bp.job_id, r.state, r.throttle, `+freshHealth+`,
	bp.tally_second, bp.tally_rows, bp.tally_busy_seconds, date_trunc('second', now())
FROM backfill_partitions bp JOIN backfill_runs r ON r.id = bp.run_id
WHERE bp.run_id = $1 AND bp.partition = $2
FOR UPDATE OF bp`), run.ID, p.Partition).QueryRow(func(row pgx.Row) error {
		if err := row.Scan(&cursor, &upper, &state, &jobID, &runState, &throttle, &health,
			&pending.Second, &pending.Rows, &pending.Busy, &second); err != nil {
			return fmt.Errorf("batches: locking partition %d of run %d: %w", p.Partition, run.ID, err)
		}
		return nil
	})
	var found cut
	if p.After != nil {
		run.keyset.queueCut(b, size, p.After.Cursor, p.After.Upper, &found)
	}
	var results pgx.BatchResults
	if tx == nil {
		results = conn.SendBatch(ctx, b)
		tx = results.Tx()
		*txp = tx
	} else {
		results = tx.SendBatch(ctx, b)
	}
	err := results.Close()
	var cutErr *cutError
	if err != nil && !errors.As(err, &cutErr) {
		return nil, err
	}
	switch {
	case jobID == nil || *jobID != p.JobID:
		return nil, ErrNotOwner
	case state == "done" || state == "failed":
		return nil, ErrPartitionFinished
	case !runState.Active():
		return nil, ErrRunInactive
	}
	// An operator's throttle applies from this batch on, and a health
	// signal holds the batch back before it starts.
	run.setThrottle(throttle)
	if run.health = health; run.HeldBack() != nil {
		return nil, ErrHeldBack
	}

	res := &BatchResult{Batch: Batch{RunID: run.ID, Version: run.Version, Partition: p.Partition}, RunState: runState}
	var (
		first, last string
		n           int64
		ok          bool
	)
	switch {
	case cutErr != nil:
		err = cutErr.err
	case p.After.at(cursor, upper) && size == batchSize():
		first, last, n, ok, err = run.keyset.finishCut(ctx, tx, size, cursor, upper, found)
	default:
		// Cut again where the partition really stands, at the size an
		// operator's throttle may just have changed.
		size = batchSize()
		first, last, n, ok, err = run.keyset.nextBatch(ctx, tx, size, cursor, upper)
	}
	if err != nil {
		return nil, &BatchError{Batch: Batch{Partition: p.Partition, First: deref(cursor), Last: deref(upper)}, Err: fmt.Errorf("cutting the next batch: %w", err)}
	}
	if ok {
		res.Batch.First, res.Batch.Last, res.Batch.Rows = first, last, n
		watch := watchLocks(ctx, p.Monitor, pid, min(timeouts.Lock/2, time.Second))
		affected, err := p.Step(ctx, tx, res.Batch)
		if blockers := watch.stop(); err != nil {
			return nil, &BatchError{Batch: res.Batch, Err: err, Blockers: blockers}
		}
		res.RowsAffected = affected
		// Fewer keys than a batch means the range is used up: finish now
		// rather than spend a transaction to find an empty batch.
		res.PartitionDone = n < int64(size)
		cursor = &last
	} else {
		res.PartitionDone = true
	}
	next := "running"
	if res.PartitionDone {
		next = "done"
	}
	// The checkpoint with the second's throughput tally, the tally of an
	// earlier second when this batch is the first of a new one, and the
	// COMMIT when the caller lets the batch end its transaction: one round
	// trip. now() is the transaction's start, as in second.
	busy := 0.0
	if ok {
		busy = time.Since(started).Seconds()
	}
	tallied, store := pending.add(second, res.Batch.Rows, busy, res.PartitionDone)
	checkpoint := &pgx.Batch{}
	checkpoint.Queue(inSchema(`
UPDATE backfill_partitions
SET cursor_key = $3, state = $4, rows_done = rows_done + $5, rows_affected = rows_affected + $6,
	batches_done = batches_done + $7, attempts = 0, last_error = NULL, updated_at = now(),
	tally_second = $8, tally_rows = $9, tally_busy_seconds = $10
WHERE run_id = $1 AND partition = $2`),
		run.ID, p.Partition, cursor, next, res.Batch.Rows, res.RowsAffected, boolInt(ok),
		tallied.Second, tallied.Rows, tallied.Busy)
	for _, bucket := range store {
		bucket.queueStore(checkpoint, run.ID, p.Partition)
	}
	commit := p.Commit && !res.PartitionDone
	if commit {
		checkpoint.Queue(`COMMIT`)
	}
	results = tx.SendBatch(ctx, checkpoint)
	for range 1 + len(store) {
		if _, err = results.Exec(); err != nil {
			break
		}
	}
	if err == nil && commit {
		var tag pgconn.CommandTag
		if tag, err = results.Exec(); err == nil && tag.String() != "COMMIT" {
			// How a COMMIT of a transaction that failed unnoticed answers.
			err = pgx.ErrTxCommitRollback
		}
		if err != nil {
			// The batch's own work failed at COMMIT (a deferred constraint):
			// a failure of the batch, with its keys.
			_ = results.Close()
			return nil, &BatchError{Batch: res.Batch, Err: fmt.Errorf("committing: %w", err)}
		}
	}
	if err = cmp.Or(err, results.Close()); err != nil {
		return nil, fmt.Errorf("batches: checkpointing partition %d of run %d: %w", p.Partition, run.ID, err)
	}
	res.Next, res.Committed = Position{Cursor: cursor, Upper: upper}, commit
	if res.PartitionDone {
		if res.RunState, err = settleRunTx(ctx, tx, run); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// Failure is what RecordFailureTx recorded.
type Failure struct {
	// Attempt counts the tries of the partition's current batch, this one
	// included; a successful batch resets it.
	Attempt int
	// Final is true when Attempt reached the run's MaxAttempts: the partition
	// is failed and waits for "retry".
	Final bool
	// RunState is the run's state afterwards (failed when nothing else of it
	// was left).
	RunState State
}

// RecordFailureTx records a failed try at a partition's next batch, with its
// error (SQLSTATE and message) and key range. After the run's MaxAttempts
// tries the partition is failed, and the run fails once nothing else of it is
// left. It returns ErrNotOwner when the job no longer owns the partition.
func RecordFailureTx(ctx context.Context, tx pgx.Tx, p BatchParams, failure error) (*Failure, error) {
	var be *BatchError
	var first, last *string
	message := describeError(failure)
	if errors.As(failure, &be) {
		first, last, message = &be.Batch.First, &be.Batch.Last, be.Error()
	}
	f := &Failure{RunState: StateRunning}
	maxAttempts := p.Run.Options.MaxAttempts
	if errors.Is(failure, ErrKeysOutOfRange) {
		maxAttempts = 1 // trying again cannot help
	}
	err := tx.QueryRow(ctx, inSchema(`
UPDATE backfill_partitions
SET attempts = attempts + 1,
	state = CASE WHEN attempts + 1 >= $4 THEN 'failed' ELSE state END,
	last_error = $5, failed_first = $6, failed_last = $7, updated_at = now()
WHERE run_id = $1 AND partition = $2 AND coalesce(job_id, 0) = $3 AND state IN ('pending', 'running')
RETURNING attempts`),
		p.Run.ID, p.Partition, p.JobID, maxAttempts, message, first, last).Scan(&f.Attempt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotOwner
	}
	if err != nil {
		return nil, fmt.Errorf("batches: recording failure of partition %d of run %d: %w", p.Partition, p.Run.ID, err)
	}
	f.Final = f.Attempt >= maxAttempts
	if err := recordBatchFailureTx(ctx, tx, p, failure, first, last, message, f, maxAttempts); err != nil {
		return nil, err
	}
	if !f.Final {
		return f, nil
	}
	if _, err := tx.Exec(ctx, inSchema(`UPDATE backfill_runs SET last_error = $2 WHERE id = $1`), p.Run.ID, message); err != nil {
		return nil, fmt.Errorf("batches: recording failure of run %d: %w", p.Run.ID, err)
	}
	if f.RunState, err = settleRunTx(ctx, tx, p.Run); err != nil {
		return nil, err
	}
	return f, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
