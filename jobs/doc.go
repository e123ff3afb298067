// Package jobs runs the engine of package batches on River: the job kind that
// works a partition (BatchArgs and BatchWorker), a worker process's pool of
// them (Worker) with its heartbeat, the Enqueuer that records runs and queues
// their jobs in one transaction, and the Go-coded backfills (GoBackfills).
//
// # Jobs
//
// One River job per partition is alive at a time. A job works batches from
// the partition's checkpoint for a slice of time (a quarter of the job
// timeout, 10 s at most), then hands the partition to a new job in the
// transaction of its last batch, so that a job lasts seconds however long the
// backfill is. Each batch's statement, its checkpoint and the job's
// completion or hand-over commit together (batches.ProcessBatch and
// river.JobCompleteTx in one transaction, begun with the batch's first
// statements).
//
// # Pace
//
// A run's rate holds across the whole pool: each batch first takes its rows
// from the run's budget (poolLimiter: one GCRA budget in Redis, or each live
// worker's share of the rate while there is no Redis), waiting as long as
// it says, and a job whose wait outlasts its slice hands over. An operator's
// throttle (rate, batch size, batch time) is read with every batch and every
// second of a wait. A run with a batch time adapts each partition's batch
// size to it, passing the size on at hand-over.
//
// # Failures
//
// A failing batch rolls back and is recorded with the partition
// (batches.RecordFailureTx); a new job tries it again from the same
// checkpoint after a backoff, until the backfill's attempts are used up.
// River's own retries are left for errors that could not be recorded. A job
// that runs into its timeout counts as a failed attempt too.
//
// # Crashes
//
// Every worker refreshes its row in the heartbeat table. On each beat it
// looks for partitions whose job runs on a worker that went silent, or whose
// job ended without finishing them, and gives them new jobs (see heartbeat.go).
// The partition's fencing token (the owning job's id) makes a stale job stop.
package jobs
