package batches

import (
	"math"
	"time"
)

// Adaptive batch size. A backfill that sets batch_time aims every batch at
// that duration: after each batch, the partition's next batch is the last
// size scaled by how far the last batch was from the target, at most doubled
// or halved at once, within batch_min..batch_max. So a batch holds its locks
// for about batch_time however costly the rows are, and the size follows the
// cost within a few batches when it changes (GitLab's batched migrations aim
// their jobs the same way, 20% per step; a backfill's batches are short and
// many, so it may move faster).

// Bounds and defaults of the adaptive batch size. A definition that sets
// neither batch nor batch_time aims at BatchTimeDefault from a first batch
// of BatchSizeDefault rows; one that sets a batch keeps that size.
// BatchTimeOff (batch_time: off, or any negative duration) is a fixed size.
const (
	BatchTimeMin     = 10 * time.Millisecond
	BatchTimeMax     = time.Minute
	BatchTimeDefault = 200 * time.Millisecond
	BatchTimeOff     = -1
	BatchMinDefault  = 10
	BatchMaxDefault  = 100_000
	// batchStepMax is the most the size grows (or 1/batchStepMax it
	// shrinks) from one batch to the next.
	batchStepMax = 2.0
	// batchTolerance is how near the target a batch must be to keep its
	// size: noise in batch times does not make the size jitter.
	batchTolerance = 0.1
)

// Adaptive reports whether batches aim at a duration rather than a size.
func (o Options) Adaptive() bool { return o.BatchTime > 0 }

// batchBounds are the sizes an adaptive batch stays within.
func (o Options) batchBounds() (lo, hi int) {
	lo, hi = o.BatchMin, o.BatchMax
	if lo == 0 {
		lo = min(BatchMinDefault, o.BatchSize)
	}
	if hi == 0 {
		hi = max(BatchMaxDefault, o.BatchSize)
	}
	return lo, hi
}

// NextBatchSize is the size of a partition's next batch after one of size
// rows (a full one, not the partition's last) took took: BatchSize for a run
// without a batch_time, else size scaled towards the target.
func (o Options) NextBatchSize(size int, took time.Duration) int {
	if !o.Adaptive() {
		return o.BatchSize
	}
	lo, hi := o.batchBounds()
	ratio := float64(o.BatchTime) / float64(max(took, time.Microsecond))
	if math.Abs(ratio-1) > batchTolerance {
		ratio = min(max(ratio, 1/batchStepMax), batchStepMax)
		size = int(math.Round(float64(size) * ratio))
	}
	return min(max(size, lo), hi)
}
