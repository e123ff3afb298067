package batches

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
)

// EventRetentionDefault is how long after a run finished its events and
// throughput history are kept; the run's row in the version table stays.
const EventRetentionDefault = 90 * 24 * time.Hour

// RunDetail is everything a run's page shows.
type RunDetail struct {
	Status RunStatus `json:"status"`
	// LatestRun is the number of the version's newest run: the one the
	// actions act on.
	LatestRun int `json:"latest_run"`
	// Definition is what the workers execute, as it was enqueued.
	Definition RunDefinition `json:"definition"`
	// Events are the run's history, oldest first, without its failed
	// batches (see Failures); at most historyLimit, the newest.
	Events []Event `json:"events"`
	// Failures are its failed batches, newest first (at most historyLimit),
	// and FailuresTotal counts them all.
	Failures      []Event `json:"failures"`
	FailuresTotal int64   `json:"failures_total"`
	// Throughput is rows per second over the run's life, one point per
	// BucketSeconds (at most about chartPoints points).
	Throughput    []ThroughputPoint `json:"throughput"`
	BucketSeconds int64             `json:"bucket_seconds"`
	Partitions    []PartitionStatus `json:"partitions"`
}

// RunDefinition is a run's definition as enqueued.
type RunDefinition struct {
	Statement string  `json:"statement"`
	Options   Options `json:"options"`
	Source    string  `json:"source"`
	Checksum  string  `json:"checksum"`
	KeyType   string  `json:"key_type"`
}

// ThroughputPoint is the rows per second of one bucket of time.
type ThroughputPoint struct {
	At            time.Time `json:"at"`
	RowsPerSecond float64   `json:"rows_per_second"`
}

// PartitionStatus is one partition of a run: its range, checkpoint, owner.
type PartitionStatus struct {
	Partition int     `json:"partition"`
	State     string  `json:"state"`
	LowerKey  *string `json:"lower_key"`
	UpperKey  *string `json:"upper_key"`
	CursorKey *string `json:"cursor_key"`
	// JobID owns the partition; JobState is its queue job's state and
	// Worker the client that last took it.
	JobID       *int64    `json:"job_id"`
	JobState    *string   `json:"job_state"`
	Worker      *string   `json:"worker"`
	RowsDone    int64     `json:"rows_done"`
	BatchesDone int64     `json:"batches_done"`
	Attempts    int       `json:"attempts"`
	LastError   *string   `json:"last_error"`
	UpdatedAt   time.Time `json:"updated_at"`
}

const (
	historyLimit = 500
	chartPoints  = 120
)

// LoadRunDetail reads run number of version for its page.
func LoadRunDetail(ctx context.Context, q Querier, version int64, number int) (*RunDetail, error) {
	runs, err := ListStatus(ctx, q, &version)
	if err != nil {
		return nil, err
	}
	d := &RunDetail{}
	found := false
	for _, r := range runs {
		if r.RunNumber == number {
			d.Status, found = r, true
		}
		d.LatestRun = max(d.LatestRun, r.RunNumber)
	}
	if !found {
		return nil, fmt.Errorf("%w: version %d has no run %d", ErrRunNotFound, version, number)
	}
	run, err := scanRun(q.QueryRow(ctx, inSchema(`SELECT `+runColumns+` FROM backfill_runs WHERE version = $1 AND run_number = $2`), version, number))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: version %d has no run %d", ErrRunNotFound, version, number)
	}
	if err != nil {
		return nil, fmt.Errorf("batches: loading run %d of version %d: %w", number, version, err)
	}
	d.Definition = RunDefinition{Statement: run.UpSQL, Options: run.Options, Source: run.Source, Checksum: run.Checksum, KeyType: run.KeyType}
	if run.Direction == DirectionDown {
		d.Definition.Statement = run.DownSQL
	}
	if d.Events, err = runEvents(ctx, q, run.ID, `action <> 'batch_failed'`, "ASC"); err != nil {
		return nil, err
	}
	if d.Failures, err = runEvents(ctx, q, run.ID, `action = 'batch_failed'`, "DESC"); err != nil {
		return nil, err
	}
	if err := q.QueryRow(ctx, inSchema(`SELECT count(*) FROM backfill_events WHERE run_id = $1 AND action = 'batch_failed'`), run.ID).Scan(&d.FailuresTotal); err != nil {
		return nil, fmt.Errorf("batches: counting the failures of %s: %w", run.Label(), err)
	}
	if d.Throughput, d.BucketSeconds, err = runThroughput(ctx, q, run.ID, d.Status.FinishedAt == nil); err != nil {
		return nil, err
	}
	if d.Partitions, err = runPartitions(ctx, q, run.ID); err != nil {
		return nil, err
	}
	return d, nil
}

// runEvents reads the newest historyLimit events of a run matching cond, in
// order (ASC: oldest first).
func runEvents(ctx context.Context, q Querier, runID int64, cond, order string) ([]Event, error) {
	rows, err := q.Query(ctx, inSchema(`SELECT at, actor, action, detail::text FROM (
	SELECT id, at, actor, action, detail FROM backfill_events WHERE run_id = $1 AND `+cond+` ORDER BY id DESC LIMIT $2
) e ORDER BY id `+order), runID, historyLimit)
	if err != nil {
		return nil, fmt.Errorf("batches: reading the events of run %d: %w", runID, err)
	}
	events, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Event])
	if err != nil {
		return nil, fmt.Errorf("batches: reading the events of run %d: %w", runID, err)
	}
	return events, nil
}

// runThroughput reads a run's rows per second over its life from its
// per-second buckets and the minutes folded from older ones, in buckets of
// a width that gives about chartPoints points (a whole minute at least
// once minutes were folded); a bucket without rows is a zero. The bucket
// still filling is left out of an unfinished run's, so the line does not
// dip at its end.
func runThroughput(ctx context.Context, q Querier, runID int64, unfinished bool) ([]ThroughputPoint, int64, error) {
	const buckets = `(SELECT second AS at, rows FROM ` + throughputBuckets + ` s WHERE run_id = $1
	UNION ALL SELECT minute, rows FROM backfill_throughput_minutes WHERE run_id = $1) b`
	var (
		first, last *time.Time
		now         time.Time
		folded      bool
	)
	if err := q.QueryRow(ctx, inSchema(`SELECT min(at), max(at), now(), EXISTS (SELECT 1 FROM backfill_throughput_minutes WHERE run_id = $1) FROM `+buckets), runID).
		Scan(&first, &last, &now, &folded); err != nil {
		return nil, 0, fmt.Errorf("batches: reading the throughput of run %d: %w", runID, err)
	}
	if first == nil {
		return []ThroughputPoint{}, 1, nil
	}
	width := chartBucket(last.Sub(*first), folded)
	rows, err := q.Query(ctx, inSchema(`SELECT floor(extract(epoch FROM at) / $2)::bigint, sum(rows)::bigint FROM `+buckets+` GROUP BY 1 ORDER BY 1`), runID, width)
	if err != nil {
		return nil, 0, fmt.Errorf("batches: reading the throughput of run %d: %w", runID, err)
	}
	byBucket := map[int64]int64{}
	var lo, hi int64 = math.MaxInt64, math.MinInt64
	var b, n int64
	if _, err := pgx.ForEachRow(rows, []any{&b, &n}, func() error {
		byBucket[b] = n
		lo, hi = min(lo, b), max(hi, b)
		return nil
	}); err != nil {
		return nil, 0, fmt.Errorf("batches: reading the throughput of run %d: %w", runID, err)
	}
	if unfinished && (hi+1)*width > now.Unix() {
		hi--
	}
	points := make([]ThroughputPoint, 0, max(hi-lo+1, 0))
	for i := lo; i <= hi; i++ {
		points = append(points, ThroughputPoint{At: time.Unix(i*width, 0).UTC(), RowsPerSecond: float64(byBucket[i]) / float64(width)})
	}
	return points, width, nil
}

// chartBucket is the width in seconds of the chart's buckets for a span:
// about chartPoints of them, whole minutes once minutes were folded.
func chartBucket(span time.Duration, folded bool) int64 {
	w := max(int64(math.Ceil(span.Seconds()/chartPoints)), 1)
	if folded {
		w = max((w+59)/60, 1) * 60
	}
	return w
}

// runPartitions reads a run's partitions with their owners.
func runPartitions(ctx context.Context, q Querier, runID int64) ([]PartitionStatus, error) {
	rows, err := q.Query(ctx, inSchema(`
SELECT bp.partition, bp.state, bp.lower_key, bp.upper_key, bp.cursor_key, bp.job_id, j.state::text, `+jobLastAttempt+`,
	bp.rows_done, bp.batches_done, bp.attempts, bp.last_error, bp.updated_at
FROM backfill_partitions bp LEFT JOIN `+riverJobs+` j ON j.id = bp.job_id
WHERE bp.run_id = $1 ORDER BY bp.partition`), runID)
	if err != nil {
		return nil, fmt.Errorf("batches: reading the partitions of run %d: %w", runID, err)
	}
	parts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[PartitionStatus])
	if err != nil {
		return nil, fmt.Errorf("batches: reading the partitions of run %d: %w", runID, err)
	}
	return parts, nil
}

// PruneHistory deletes the events and throughput of runs that finished
// longer than retention ago, and returns how many rows went. The runs
// themselves stay in the version table.
func PruneHistory(ctx context.Context, q Querier, retention time.Duration) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, inSchema(`WITH old AS (
	SELECT id FROM backfill_runs WHERE finished_at < now() - $1::interval AND state IN ('completed', 'cancelled', 'failed')
), e AS (
	DELETE FROM backfill_events WHERE run_id IN (SELECT id FROM old) RETURNING 1
), t AS (
	DELETE FROM backfill_throughput WHERE run_id IN (SELECT id FROM old) RETURNING 1
), m AS (
	DELETE FROM backfill_throughput_minutes WHERE run_id IN (SELECT id FROM old) RETURNING 1
), p AS (
	-- The last second of partitions that never finished.
	UPDATE backfill_partitions SET tally_second = NULL, tally_rows = 0, tally_busy_seconds = 0
	WHERE run_id IN (SELECT id FROM old) AND tally_second IS NOT NULL RETURNING 1
)
SELECT (SELECT count(*) FROM e) + (SELECT count(*) FROM t) + (SELECT count(*) FROM m) + (SELECT count(*) FROM p)`), retention).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("batches: pruning the history of runs finished over %s ago: %w", retention, err)
	}
	return n, nil
}
