package batches

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults of MigrateOptions.
const (
	MigrateLeaseDefault = 30 * time.Second
	MigrateWaitDefault  = 10 * time.Minute
)

// MigrateOptions tune Migrate's lock.
type MigrateOptions struct {
	// Lease is how long the lock lasts unless renewed; a migrator renews it
	// every third of it while it works, and the lock of a process that died
	// is free once it runs out (MigrateLeaseDefault when zero).
	Lease time.Duration
	// Wait bounds the wait for another migrator (MigrateWaitDefault).
	Wait time.Duration
	// Holder names this process in the lock row; host, pid and a random
	// part when empty.
	Holder string
	// OnWait, when set, is told who holds the lock, once per holder, while
	// this call waits for it.
	OnWait func(holder string, expires time.Time)
}

// migrateLock is a held lease on backfill_migrate_lock. Its ctx is cancelled
// when the lease is lost (renewals failed until it ran out), so that work
// under it stops.
type migrateLock struct {
	pool   *pgxpool.Pool
	holder string
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}
	wg     sync.WaitGroup
}

// acquireMigrateLock takes the lease, waiting while another live migrator
// holds it.
func acquireMigrateLock(ctx context.Context, pool *pgxpool.Pool, o MigrateOptions) (*migrateLock, error) {
	o.Lease = cmp.Or(o.Lease, MigrateLeaseDefault)
	o.Wait = cmp.Or(o.Wait, MigrateWaitDefault)
	if o.Holder == "" {
		host, _ := os.Hostname()
		o.Holder = fmt.Sprintf("%s pid %d (%08x)", cmp.Or(host, "unknown host"), os.Getpid(), rand.Uint32())
	}
	deadline := time.Now().Add(o.Wait)
	lastHolder := ""
	for {
		tag, err := pool.Exec(ctx, inSchema(`
INSERT INTO backfill_migrate_lock (id, holder, expires_at) VALUES (1, $1, now() + $2::interval)
ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, acquired_at = now(), expires_at = excluded.expires_at
WHERE backfill_migrate_lock.expires_at < now()`), o.Holder, o.Lease)
		if err != nil {
			return nil, fmt.Errorf("batches: migrate: taking the migration lock: %w", err)
		}
		if tag.RowsAffected() == 1 {
			break
		}
		var (
			holder  string
			expires time.Time
		)
		err = pool.QueryRow(ctx, inSchema(`SELECT holder, expires_at FROM backfill_migrate_lock WHERE id = 1`)).Scan(&holder, &expires)
		if err == nil && holder != lastHolder && o.OnWait != nil {
			o.OnWait(holder, expires)
			lastHolder = holder
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("batches: migrate: waited %s for the migration lock held by %s (its lease runs until %s)",
				o.Wait, holder, expires.Format(time.RFC3339))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	l := &migrateLock{pool: pool, holder: o.Holder, done: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancelCause(ctx)
	l.wg.Add(1)
	go l.renew(o.Lease)
	return l, nil
}

var errLeaseLost = errors.New("batches: migrate: the migration lock's lease ran out while migrating")

// renew extends the lease every third of it until release.
func (l *migrateLock) renew(lease time.Duration) {
	defer l.wg.Done()
	ticker := time.NewTicker(lease / 3)
	defer ticker.Stop()
	lastRenewed := time.Now()
	for {
		select {
		case <-l.done:
			return
		case <-ticker.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), lease/3)
		tag, err := l.pool.Exec(ctx, inSchema(`UPDATE backfill_migrate_lock SET expires_at = now() + $2::interval WHERE id = 1 AND holder = $1`), l.holder, lease)
		cancel()
		switch {
		case err == nil && tag.RowsAffected() == 1:
			lastRenewed = time.Now()
		case err == nil, time.Since(lastRenewed) >= lease:
			// Taken over, or not renewed for a whole lease: stop.
			l.cancel(errLeaseLost)
			return
		}
	}
}

// err reports a lost lease.
func (l *migrateLock) err() error {
	if errors.Is(context.Cause(l.ctx), errLeaseLost) {
		return errLeaseLost
	}
	return nil
}

// release gives the lease back.
func (l *migrateLock) release() {
	close(l.done)
	l.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = l.pool.Exec(ctx, inSchema(`DELETE FROM backfill_migrate_lock WHERE id = 1 AND holder = $1`), l.holder)
	l.cancel(nil)
}
