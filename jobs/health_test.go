package jobs

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// healthRun enqueues a paced counting backfill over 20,000 rows with the
// header lines given (and a table gate for throttle queries), and starts a worker that beats every 200 ms, on
// sessions named as the binaries name theirs (left out of the signals).
func healthRun(t *testing.T, version int64, header string) *testBundle {
	t.Helper()
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE strained (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO strained (id) SELECT g FROM generate_series(1, 20000) g; ANALYZE strained;
CREATE TABLE gate (hold bool NOT NULL); INSERT INTO gate VALUES (false);`)
	b.writeFile(t, itoa(int(version))+"_strained.sql", "-- table: strained\n-- key: id\n-- batch: 100\n-- partitions: 2\n-- rate: 2000\n"+header+
		"UPDATE strained SET n = n + 1 WHERE id BETWEEN @first AND @last;\n")
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)
	cfg := b.pool.Config().Copy()
	cfg.ConnConfig.RuntimeParams["application_name"] = "backfill"
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	w, err := NewWorker(WorkerConfig{Pool: pool, Registry: b.reg, Concurrency: 2, Heartbeat: 200 * time.Millisecond, DeadAfter: time.Second})
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() { _ = w.Stop(10 * time.Second) })
	b.waitRows(t, version, 500, 30*time.Second)
	return b
}

// waitHeld waits until status says the run is held back for a reason that
// contains want, makes sure its rows stand still (a batch in flight per
// partition may still land), and returns the reading.
func (b *testBundle) waitHeld(t *testing.T, version int64, want string) batches.RunStatus {
	t.Helper()
	start := time.Now()
	var st batches.RunStatus
	for {
		st = b.status(t, version)
		if strings.Contains(st.HeldBack, "database under strain: ") && strings.Contains(st.HeldBack, want) {
			break
		}
		require.Less(t, time.Since(start), 10*time.Second, "not held back for %q; held back: %q", want, st.HeldBack)
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("held back %s after the strain began: %s", time.Since(start).Round(time.Millisecond), st.HeldBack)
	time.Sleep(300 * time.Millisecond) // batches in flight
	rows := b.status(t, version).RowsDone
	time.Sleep(1500 * time.Millisecond)
	now := b.status(t, version)
	require.Equal(t, rows, now.RowsDone, "a held run's rows stand still")
	require.Equal(t, batches.StateRunning, now.State)
	require.Zero(t, now.BatchesFailed, "held back, never failed")
	require.NotNil(t, now.Health)
	return now
}

// waitReleased waits until the run moves again and no signal holds it.
func (b *testBundle) waitReleased(t *testing.T, version int64) {
	t.Helper()
	start := time.Now()
	rows := b.status(t, version).RowsDone
	for {
		st := b.status(t, version)
		if st.RowsDone > rows+200 && !strings.Contains(st.HeldBack, "under strain") {
			break
		}
		require.Less(t, time.Since(start), 10*time.Second, "still held back: %q", st.HeldBack)
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("moving again %s after the strain ended", time.Since(start).Round(time.Millisecond))
}

// A transaction open longer than max_transaction_age holds the run back
// until it ends; the reading names its session.
func TestHealth_LongTransactionHoldsTheRun(t *testing.T) {
	b := healthRun(t, 21, "-- max_transaction_age: 1s\n")
	conn, err := b.pool.Acquire(context.Background())
	require.NoError(t, err)
	defer conn.Release()
	tx, err := conn.Begin(context.Background())
	require.NoError(t, err)
	var pid int32
	require.NoError(t, tx.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&pid))

	st := b.waitHeld(t, 21, "a transaction open for")
	require.Contains(t, st.HeldBack, "> 1s (pid "+itoa(int(pid))+")")
	var sig batches.Signal
	for _, s := range st.Health.Signals {
		if s.Name == batches.SignalTransactionAge {
			sig = s
		}
	}
	require.True(t, sig.Holds)
	require.Equal(t, 1.0, sig.Limit)
	require.Greater(t, sig.Value, 1.0)

	require.NoError(t, tx.Rollback(context.Background()))
	b.waitReleased(t, 21)
	b.waitState(t, 21, batches.StateCompleted, 60*time.Second)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM strained WHERE n <> 1`))
}

// A throttle query, active backends and a vacuum on the table hold the run
// back, each changed at run time; a throttle query that fails holds it too.
func TestHealth_ThrottleQueryActiveBackendsAndVacuum(t *testing.T) {
	b := healthRun(t, 22, "-- throttle_query: SELECT hold FROM gate\n")
	ctx := context.Background()
	throttle := func(change batches.Throttle) {
		t.Helper()
		_, err := b.enq.Throttle(ctx, 22, change, "test")
		require.NoError(t, err)
	}

	// The user's own query says when to hold.
	testdb.Exec(t, b.pool, `UPDATE gate SET hold = true`)
	b.waitHeld(t, 22, "the throttle query says hold")
	testdb.Exec(t, b.pool, `UPDATE gate SET hold = false`)
	b.waitReleased(t, 22)

	// A query that fails holds the run, with its error.
	throttle(batches.Throttle{ThrottleQuery: ptr("SELECT 1/0 = 1")})
	b.waitHeld(t, 22, "the throttle query says hold (it failed: SQLSTATE 22012")
	throttle(batches.Throttle{ThrottleQuery: ptr("")})
	b.waitReleased(t, 22)

	// More sessions running a statement than the limit.
	throttle(batches.Throttle{MaxActiveBackends: ptr(2)})
	busy := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := b.pool.Exec(ctx, `SELECT pg_sleep(3.5)`)
			busy <- err
		}()
	}
	b.waitHeld(t, 22, "active backends > 2")
	for range 3 {
		require.NoError(t, <-busy)
	}
	b.waitReleased(t, 22)

	// A vacuum working on the table, slowed down so that it lasts.
	throttle(batches.Throttle{HoldDuringVacuum: ptr(true)})
	conn, err := b.pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	var pid int32
	require.NoError(t, conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
	_, err = conn.Exec(ctx, `SET vacuum_cost_delay = 100; SET vacuum_cost_limit = 1`)
	require.NoError(t, err)
	vacuumed := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, `VACUUM strained`)
		vacuumed <- err
	}()
	b.waitHeld(t, 22, "vacuum is working on the table")
	testdb.Exec(t, b.pool, `SELECT pg_cancel_backend($1)`, pid)
	require.ErrorContains(t, <-vacuumed, "57014", "the vacuum was cancelled")
	b.waitReleased(t, 22)

	b.waitState(t, 22, batches.StateCompleted, 60*time.Second)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM strained WHERE n <> 1`))
}
