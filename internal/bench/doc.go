// Package bench holds benchmarks that drive the real binaries against the
// tests' PostgreSQL server: BenchmarkGentleDefault measures what a backfill
// with no tuning costs an application (pgbench) beside it. They run only
// with -bench; see each benchmark's comment for how.
package bench
