package batches

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Defaults of Timeouts: short enough that the live application never waits
// long behind a batch, long enough for an ordinary batch.
const (
	LockTimeoutDefault       = 2 * time.Second
	StatementTimeoutDefault  = 30 * time.Second
	IdleInTransactionDefault = 10 * time.Second
)

// Timeouts bound every wait of a transaction of ours. They are set with
// SET LOCAL semantics (set_config(..., true)), so they end with the
// transaction and are safe behind a transaction-pooling PgBouncer.
type Timeouts struct {
	// Lock bounds each wait for a row or table lock (lock_timeout).
	Lock time.Duration
	// Statement bounds each statement (statement_timeout).
	Statement time.Duration
	// IdleInTransaction ends the session of a transaction left idle that
	// long (idle_in_transaction_session_timeout): a frozen or partitioned
	// worker cannot keep rows locked.
	IdleInTransaction time.Duration
}

// WithDefaults fills zero fields with the defaults.
func (t Timeouts) WithDefaults() Timeouts {
	if t.Lock == 0 {
		t.Lock = LockTimeoutDefault
	}
	if t.Statement == 0 {
		t.Statement = StatementTimeoutDefault
	}
	if t.IdleInTransaction == 0 {
		t.IdleInTransaction = IdleInTransactionDefault
	}
	return t
}

// ForRun returns t with a backfill's own lock and statement timeouts, where it
// sets them, in place of the worker's.
func (t Timeouts) ForRun(o Options) Timeouts {
	if o.LockTimeout > 0 {
		t.Lock = o.LockTimeout
	}
	if o.StatementTimeout > 0 {
		t.Statement = o.StatementTimeout
	}
	return t
}

// SetTx applies t to tx and returns the server process id of its session
// (the real backend, also behind PgBouncer), to find who blocks it.
func (t Timeouts) SetTx(ctx context.Context, tx pgx.Tx) (int32, error) {
	var pid int32
	b := &pgx.Batch{}
	t.queue(b, &pid)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return 0, err
	}
	return pid, nil
}

// queue adds the statement that applies t to b, so that it can share a round
// trip with the next statements; pid receives the session's process id.
func (t Timeouts) queue(b *pgx.Batch, pid *int32) {
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	b.Queue(`SELECT pg_backend_pid(), set_config('lock_timeout', $1, true),
	set_config('statement_timeout', $2, true), set_config('idle_in_transaction_session_timeout', $3, true)`,
		ms(t.Lock), ms(t.Statement), ms(t.IdleInTransaction)).QueryRow(func(row pgx.Row) error {
		if err := row.Scan(pid, nil, nil, nil); err != nil {
			return fmt.Errorf("batches: setting timeouts: %w", err)
		}
		return nil
	})
}

// lockWatch finds, while a batch is slow, the sessions that block it, so that
// its error can say whose lock it waited for. A timer, not a goroutine,
// waits for the batch to turn slow: most batches never do, and a goroutine
// per batch costs a fast batch a wake-up of another thread.
type lockWatch struct {
	mu       sync.Mutex
	timer    *time.Timer
	stopped  bool
	looking  sync.WaitGroup
	blockers []int32
}

// watchLocks asks q for pg_blocking_pids(pid) once the batch has taken
// longer than after, and every after from then on, until stop.
func watchLocks(ctx context.Context, q Querier, pid int32, after time.Duration) *lockWatch {
	w := &lockWatch{}
	if q == nil || pid == 0 || after <= 0 {
		return w
	}
	w.timer = time.AfterFunc(after, func() { w.look(ctx, q, pid, after) })
	return w
}

// look asks once who blocks the batch, and looks again after another
// after unless the watch stopped meanwhile.
func (w *lockWatch) look(ctx context.Context, q Querier, pid int32, after time.Duration) {
	w.mu.Lock()
	if w.stopped || ctx.Err() != nil {
		w.mu.Unlock()
		return
	}
	w.looking.Add(1) // before stop's Wait: stopped is set under mu
	w.mu.Unlock()
	defer w.looking.Done()
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	var pids []int32
	err := q.QueryRow(qctx, `SELECT pg_blocking_pids($1)`, pid).Scan(&pids)
	cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil && len(pids) > 0 {
		w.blockers = pids
	}
	if !w.stopped {
		w.timer.Reset(after)
	}
}

// stop ends the watch, waits for a look in flight, and returns the last
// blockers seen.
func (w *lockWatch) stop() []int32 {
	if w.timer == nil {
		return nil
	}
	w.mu.Lock()
	w.stopped = true
	w.timer.Stop()
	w.mu.Unlock()
	w.looking.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.blockers
}

// describeBlockers says whose locks a batch waited for: "waiting on a lock
// held by pid 123", the words status shows.
func describeBlockers(pids []int32) string {
	if len(pids) == 0 {
		return ""
	}
	s := make([]string, len(pids))
	for i, p := range pids {
		s[i] = strconv.Itoa(int(p))
	}
	word := "pid"
	if len(pids) > 1 {
		word = "pids"
	}
	return fmt.Sprintf("waiting on a lock held by %s %s", word, strings.Join(s, ", "))
}

// Beginner starts transactions: a pool or a connection.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// BeginFunc runs fn in a transaction bounded by t (zero fields take the
// defaults), committing when fn returns nil and rolling back otherwise.
func (t Timeouts) BeginFunc(ctx context.Context, db Beginner, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := t.WithDefaults().SetTx(ctx, tx); err != nil {
			return err
		}
		return fn(tx)
	})
}
