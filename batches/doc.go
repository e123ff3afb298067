// Package batches is the backfill engine: backfill definitions (SQL files and
// Go types), key-range planning, keyset batches with checkpoints, rate
// limiting, and the version table that records every run.
//
// It knows nothing of the command line. Of River it knows only its job table,
// which client works a job, and which of its states mean the job may still
// run, all named once in lifecycle.go: the River job kinds and clients live
// in package jobs.
//
// # The life of a run
//
// lifecycle.go owns a run's states, the changes allowed between them, and
// the functions that make each change ([PauseTx], [ResumeTx], [CancelTx],
// [RetryTx], and the settlement when a partition finishes). Every
// transaction that locks both takes a run's partition rows first and its run
// row last, FOR NO KEY UPDATE. The workers' heartbeat (workers.go) finds
// partitions whose job died with its worker, or ended without finishing them.
//
// # Definitions
//
// A [Definition] is one backfill: a version, a name, a [Mode] (automatic
// backfills are enqueued by "enqueue pending", manual ones only on request),
// [Options] saying which table and key column to walk, and a [BatchFunc] that
// processes one batch. SQL files are read by [LoadDir]; Go backfills implement
// [GoBackfill] and are added with [Registry.Register].
//
// # Runs, partitions and batches
//
// Enqueuing a definition creates a run (a row of backfill_runs) whose key space
// is split into partitions (rows of backfill_partitions). Each partition is
// walked in keyset order, one batch at a time. [ProcessBatchTx] runs one batch
// and writes the partition's checkpoint in the caller's transaction, so a
// batch's effects and its checkpoint commit together or not at all;
// [ProcessBatch] does the same in a transaction it begins with the batch's
// first statements, one round trip fewer.
//
// # Exactly once
//
// The partition row carries a fencing token (the id of the queue job that owns
// it) and is locked FOR UPDATE while a batch runs. A crash at any point rolls
// the batch and its checkpoint back together; a second job that somehow works
// the same partition either waits for the lock and then sees the new
// checkpoint, or finds it no longer owns the partition and stops. Database
// work is therefore applied exactly once; work against other systems (Redis)
// is at least once and must be idempotent.
package batches
