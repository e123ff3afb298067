package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/backfill/backfill/batches"
)

// Errors of the Enqueuer's commands, for callers that test for them.
var (
	// ErrNeedsAgain is returned by Run for a version whose last run completed
	// or was cancelled, when again is false.
	ErrNeedsAgain = errors.New("jobs: version has run before, and running it again was not asked for")
	// ErrBusy is returned by Run and Revert while a run of the version is
	// still in progress.
	ErrBusy = errors.New("jobs: version has a run in progress")
	// ErrNothingToRetry is returned by Retry when no batch of the run failed.
	ErrNothingToRetry = batches.ErrNothingToRetry
	// ErrNotRevertible is returned by Revert when the definition has no down
	// step or the forward run has not finished.
	ErrNotRevertible = errors.New("jobs: cannot revert")
)

// Enqueuer records runs in the version table and queues their jobs, each run
// in the same transaction as its jobs.
type Enqueuer struct {
	pool     *pgxpool.Pool
	registry *batches.Registry
	host     string
	client   *river.Client[pgx.Tx]
	timeouts batches.Timeouts
}

// Defaults of the enqueuer's timeouts: a deploy must not hang behind a lock
// held by someone else, yet planning a big table may take a while.
const (
	EnqueueLockTimeoutDefault      = 5 * time.Second
	EnqueueStatementTimeoutDefault = time.Minute
)

// SetTimeouts bounds the lock waits and statements of the enqueuer's
// transactions; zero fields take the enqueue defaults.
func (e *Enqueuer) SetTimeouts(t batches.Timeouts) {
	t.Lock = cmp.Or(t.Lock, EnqueueLockTimeoutDefault)
	t.Statement = cmp.Or(t.Statement, EnqueueStatementTimeoutDefault)
	e.timeouts = t.WithDefaults()
}

// NewEnqueuer returns an Enqueuer; host is recorded as who enqueued each run.
func NewEnqueuer(pool *pgxpool.Pool, registry *batches.Registry, host string) (*Enqueuer, error) {
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Schema: batches.SchemaName()})
	if err != nil {
		return nil, fmt.Errorf("jobs: creating the River client: %w", err)
	}
	e := &Enqueuer{pool: pool, registry: registry, host: host, client: client}
	e.SetTimeouts(batches.Timeouts{})
	return e, nil
}

// PendingResult is what Pending did.
type PendingResult struct {
	Enqueued []*batches.Run
	// AlreadyEnqueued counts automatic backfills that have a run already.
	AlreadyEnqueued int
	// Drifted lists definitions changed since their run was enqueued.
	Drifted []Drift
}

// Drift is a definition whose checksum differs from its recorded run's.
type Drift struct {
	Definition       *batches.Definition
	RecordedChecksum string
}

func (d Drift) String() string {
	return fmt.Sprintf("%s (%s) changed since it was enqueued: checksum %s, recorded %s",
		d.Definition.Label(), d.Definition.Source, d.Definition.Checksum, d.RecordedChecksum)
}

// Pending enqueues every automatic backfill that has never been enqueued, all
// in one transaction. Concurrent calls enqueue each version once: the first
// run of a version is unique in the version table, and the losers of the race
// skip it.
func (e *Enqueuer) Pending(ctx context.Context) (*PendingResult, error) {
	res := &PendingResult{}
	recorded, err := batches.LatestRuns(ctx, e.pool)
	if err != nil {
		return nil, err
	}
	var todo []*batches.Definition
	for _, def := range e.registry.All() {
		if latest, ok := recorded[def.Version]; ok {
			if latest.Checksum != def.Checksum {
				res.Drifted = append(res.Drifted, Drift{Definition: def, RecordedChecksum: latest.Checksum})
			}
			if def.Mode == batches.ModeAuto {
				res.AlreadyEnqueued++
			}
			continue
		}
		if def.Mode == batches.ModeAuto {
			todo = append(todo, def)
		}
	}
	if len(todo) == 0 {
		return res, nil
	}
	err = e.timeouts.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		res.Enqueued = nil
		for _, def := range todo {
			run, err := e.enqueueTx(ctx, tx, def, batches.DirectionUp, 1)
			if errors.Is(err, batches.ErrAlreadyEnqueued) {
				res.AlreadyEnqueued++
				continue
			}
			if err != nil {
				return err
			}
			res.Enqueued = append(res.Enqueued, run)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// Run enqueues a run of version: a manual backfill, or an automatic one not
// yet enqueued. A version that has run before needs again, and is refused
// while a run of it is in progress.
func (e *Enqueuer) Run(ctx context.Context, version int64, again bool) (*batches.Run, error) {
	def, err := e.registry.Get(version)
	if err != nil {
		return nil, err
	}
	var run *batches.Run
	err = e.timeouts.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		latest, err := batches.LatestRun(ctx, tx, version, true)
		number := 1
		switch {
		case errors.Is(err, batches.ErrRunNotFound):
		case err != nil:
			return err
		case latest.State != batches.StateCompleted && latest.State != batches.StateCancelled:
			return fmt.Errorf("%w: %s is %s (use retry for failed batches)", ErrBusy, latest.Label(), latest.State)
		case !again:
			return fmt.Errorf("%w: %s is %s", ErrNeedsAgain, latest.Label(), latest.State)
		default:
			number = latest.RunNumber + 1
		}
		run, err = e.enqueueTx(ctx, tx, def, batches.DirectionUp, number)
		return err
	})
	return run, err
}

// Revert enqueues a run of version's down step over the same key space, once
// its forward run has completed or was cancelled.
func (e *Enqueuer) Revert(ctx context.Context, version int64) (*batches.Run, error) {
	def, err := e.registry.Get(version)
	if err != nil {
		return nil, err
	}
	if def.Down == nil {
		return nil, fmt.Errorf("%w: %s has no down step (a \"-- down\" statement)", ErrNotRevertible, def.Label())
	}
	var run *batches.Run
	err = e.timeouts.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		latest, err := batches.LatestRun(ctx, tx, version, true)
		if errors.Is(err, batches.ErrRunNotFound) {
			return fmt.Errorf("%w: %s was never run", ErrNotRevertible, def.Label())
		}
		if err != nil {
			return err
		}
		if latest.Direction == batches.DirectionDown {
			return fmt.Errorf("%w: %s is already a revert (%s)", ErrNotRevertible, latest.Label(), latest.State)
		}
		if latest.State != batches.StateCompleted && latest.State != batches.StateCancelled {
			return fmt.Errorf("%w: %s is %s; it must be completed or cancelled first", ErrNotRevertible, latest.Label(), latest.State)
		}
		run, err = e.enqueueTx(ctx, tx, def, batches.DirectionDown, latest.RunNumber+1)
		return err
	})
	return run, err
}

// Retry gives every failed batch of version's latest run a new job that
// resumes from its partition's checkpoint, and puts the run back to running.
// It returns how many partitions were resumed.
func (e *Enqueuer) Retry(ctx context.Context, version int64) (*batches.Run, int, error) {
	var (
		run   *batches.Run
		parts []int
	)
	err := e.timeouts.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		var err error
		if run, parts, err = batches.RetryTx(ctx, tx, version); err != nil {
			return err
		}
		return e.insertJobsTx(ctx, tx, run, parts)
	})
	if err != nil {
		return nil, 0, err
	}
	return run, len(parts), nil
}

func (e *Enqueuer) enqueueTx(ctx context.Context, tx pgx.Tx, def *batches.Definition, dir batches.Direction, number int) (*batches.Run, error) {
	run, parts, err := batches.CreateRunTx(ctx, tx, batches.NewRunParams{Definition: def, Direction: dir, RunNumber: number, EnqueuedBy: e.host})
	if errors.Is(err, batches.ErrAlreadyEnqueued) {
		return nil, fmt.Errorf("%w: %s run %d was enqueued by someone else just now", err, def.Label(), number)
	}
	if err != nil {
		return nil, err
	}
	if err := e.insertJobsTx(ctx, tx, run, parts); err != nil {
		return nil, err
	}
	return run, nil
}

func (e *Enqueuer) insertJobsTx(ctx context.Context, tx pgx.Tx, run *batches.Run, parts []int) error {
	if len(parts) == 0 {
		return nil
	}
	params := make([]river.InsertManyParams, len(parts))
	for i, p := range parts {
		params[i] = river.InsertManyParams{Args: BatchArgs{RunID: run.ID, Partition: p}}
	}
	results, err := e.client.InsertManyTx(ctx, tx, params)
	if err != nil {
		return fmt.Errorf("jobs: queueing jobs of %s: %w", run.Label(), err)
	}
	for i, r := range results {
		if err := batches.AssignJobTx(ctx, tx, run.ID, parts[i], 0, r.Job.ID); err != nil {
			return err
		}
	}
	return nil
}
