// Package faults is the fault suite for infrastructure faults: tests that
// drive the real worker and enqueue binaries against a private PostgreSQL
// cluster and a private redis-server, break them mid-run, and check
// afterwards that every row was processed exactly once.
//
// The harness (NewPG, NewRedis, Build, StartWorker, Run) is exported so
// that other test packages can use it. NewPG runs initdb and pg_ctl of the
// newest installed major version (under /usr/lib/postgresql/*/bin) in a
// temporary directory on a free port, as the OS user postgres when the tests
// run as root; NewRedis starts redis-server as a child process on a free
// port. NewPgBouncer puts a real PgBouncer (Debian's pgbouncer, as the OS
// user postgres when the tests run as root) in front of such a cluster, in
// transaction mode by default, as a child process on a free port. All are
// stopped when the test ends. The shared servers on 5432 and 6379 are never
// touched.
//
// When the PostgreSQL server binaries, redis-server or pgbouncer are
// missing, the tests skip, or fail when CI=true (.ci/run installs them).
//
// The tests (a counting backfill, UPDATE counters SET n = n + 1, unless
// said otherwise; each ends with every row's n at exactly 1 and the run
// completed):
//
//   - PostgreSQL restarted with -m fast and with -m immediate mid-run, and
//     stopped for 8 s mid-run: two workers keep running and resume.
//   - redis-server killed during FeatureFlagsToRedis and started again: the
//     batch is retried and every flag is in the Redis hash.
//   - The target column, then the table, renamed mid-run: the run fails with
//     the SQLSTATE in status; renamed back, "enqueue retry" completes it.
//   - The backfill file edited, then deleted mid-run: the recorded statement
//     keeps running.
//   - SIGTERM to a worker mid-run, also while its jobs wait for the rate
//     limit: it exits 0 within a second and another worker finishes.
//   - Everything behind PgBouncer in transaction mode with 4 server
//     connections: 4 concurrent migrate (schema installed once, no advisory
//     lock left behind, a fifth migrate within 10 s), 8 concurrent pending
//     (each of 8 versions enqueued once), two workers, pause and resume
//     mid-run, status --json and wait.
//   - Four worker processes on one run at rate 8000 rows/s, with Redis,
//     without, and with Redis killed mid-window (TestPoolRate): the rows the
//     pool does over 30 s stay within 5% of the rate, status says how the
//     rate is held, and no row is processed twice (the run does not finish).
//   - A streaming replica (NewReplica: pg_basebackup of the private
//     cluster) whose replay is paused: replica lag holds the run back
//     without failing a batch, and resuming replay lets it finish.
//
// Every test logs what it measured as lines "FIGURE name key=value ...".
//
// BenchmarkScaleOut (go test -run XXX -bench ScaleOut -benchtime 1x) measures
// how the pool's speed grows with worker processes on I/O-bound batches, and
// that a pool-wide rate caps it, with Redis and without.
//
//	go test -count=1 -v ./internal/faults/
package faults
