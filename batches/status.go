package batches

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// RunStatus is one run as status shows it (see statusQuery).
type RunStatus struct {
	Version      int64     `json:"version"`
	Name         string    `json:"name"`
	Mode         Mode      `json:"mode"`
	Direction    Direction `json:"direction"`
	RunNumber    int       `json:"run"`
	State        State     `json:"state"`
	RowsDone     int64     `json:"rows_done"`
	RowsAffected int64     `json:"rows_affected"`
	// RowsEstimated is the planner's estimate of the rows to do until the
	// run completed, then the rows done; 0 while unknown (the run has done
	// as many rows as estimated, so the estimate was wrong).
	RowsEstimated    int64 `json:"rows_estimated"`
	BatchesDone      int64 `json:"batches_done"`
	BatchesFailed    int64 `json:"batches_failed"`
	Partitions       int64 `json:"partitions"`
	PartitionsActive int64 `json:"partitions_active"`
	// PartitionsRunning counts partitions a worker is working now, and
	// PartitionsWaiting those whose job has waited for a worker for more
	// than two seconds.
	PartitionsRunning int64 `json:"partitions_running"`
	PartitionsWaiting int64 `json:"partitions_waiting"`
	// RowsPerSecond is measured over the last minute of the run, leaving
	// out the first second after its start or last resume; before a whole
	// second after it was measured, the speed so far, no faster than its
	// limits allow (see eta.go). Never above the rate in force.
	RowsPerSecond float64 `json:"rows_per_second"`
	// BusyShare is the share of the last minute (or the run's life, or the
	// time since its last resume) the run's batches kept the database busy,
	// summed over the pool: what its duty cycle counts.
	BusyShare float64 `json:"busy_share"`
	// ETASeconds is the time left at RowsPerSecond, the best estimate;
	// null when unknown. ETALowSeconds and ETAHighSeconds are the range the
	// time left lies within, from how sure the speed is: wide in the first
	// seconds, narrower as more seconds are measured; null when ETASeconds
	// is.
	ETASeconds     *float64 `json:"eta_seconds"`
	ETALowSeconds  *float64 `json:"eta_low_seconds"`
	ETAHighSeconds *float64 `json:"eta_high_seconds"`
	// Rate is the run's limit in rows per second across the pool (0: none)
	// and BatchSize its rows per batch, as in force: an operator's
	// throttle, or else the definition's.
	Rate      float64 `json:"rate"`
	BatchSize int     `json:"batch_size"`
	// DutyCycle is the share of time the run's batches may keep the
	// database busy, as in force (0: off).
	DutyCycle float64 `json:"duty_cycle"`
	// BatchTimeMS is the duration an adaptive run's batches aim at, in
	// milliseconds (0: a fixed batch size); BatchSize is then the first
	// batch's.
	BatchTimeMS int64 `json:"batch_time_ms,omitempty"`
	// ThrottledBy and ThrottledAt say who last throttled the run and when.
	ThrottledBy *string    `json:"throttled_by,omitempty"`
	ThrottledAt *time.Time `json:"throttled_at,omitempty"`
	// RateLimit says how the live workers hold rates: "redis" (one budget
	// for the pool), "share: ..." (each takes an equal part) with the
	// reason, or both joined by a comma while they differ.
	RateLimit string `json:"rate_limit"`
	// Health is the last reading of an unfinished run's health signals
	// (values, limits, and which hold it back); nil when none is fresh.
	Health *Health `json:"health,omitempty"`
	// HeldBack says why an unfinished run is not going faster: paused, rate
	// limit, waiting for workers, retrying a failed batch.
	HeldBack string `json:"held_back,omitempty"`
	// RetryingAttempt is the highest attempt of a batch being retried (0: none).
	RetryingAttempt int `json:"retrying_attempt"`
	MaxAttempts     int `json:"max_attempts"`
	// WorkersAlive counts the worker processes whose heartbeat is recent,
	// whatever they work on.
	WorkersAlive int `json:"workers_alive"`

	LastError  *string    `json:"last_error"`
	Checksum   string     `json:"checksum"`
	EnqueuedBy string     `json:"enqueued_by"`
	EnqueuedAt time.Time  `json:"enqueued_at"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	// Drift is set by callers that know the current definition, when its
	// checksum differs from the one recorded with the run.
	Drift string `json:"drift,omitempty"`
}

// ListStatus returns every run, oldest version first, or only the runs of
// version when it is not nil, as of now.
func ListStatus(ctx context.Context, q Querier, version *int64) ([]RunStatus, error) {
	return ListStatusAt(ctx, q, version, StatusClock{})
}

// ListStatusAt is ListStatus at the time and with the windows of clock.
func ListStatusAt(ctx context.Context, q Querier, version *int64, clock StatusClock) ([]RunStatus, error) {
	now, speed, waiting, deadAfter := clock.args()
	rows, err := q.Query(ctx, inSchema(statusQuery), version, now, speed, waiting, deadAfter)
	if err != nil {
		return nil, fmt.Errorf("batches: reading status: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (RunStatus, error) {
		var (
			s RunStatus
			m speedSample
		)
		err := r.Scan(&s.Version, &s.Name, &s.Mode, &s.Direction, &s.RunNumber, &s.State, &s.RowsDone, &s.RowsAffected,
			&s.RowsEstimated, &s.BatchesDone, &s.BatchesFailed, &s.Partitions, &s.PartitionsActive, &s.LastError,
			&s.Checksum, &s.EnqueuedBy, &s.EnqueuedAt, &s.StartedAt, &s.FinishedAt,
			&s.PartitionsRunning, &s.PartitionsWaiting,
			&m.Span, &m.Rows, &m.Busy, &m.SteadySpan, &m.SteadyRows, &m.SteadyBusy, &m.WholeSeconds, &m.WholeRows, &m.WholeSquares, &m.Slots,
			&s.Rate, &s.DutyCycle, &s.BatchSize, &s.BatchTimeMS, &s.ThrottledBy, &s.ThrottledAt,
			&s.RetryingAttempt, &s.MaxAttempts, &s.WorkersAlive, &s.RateLimit, &s.Health)
		if err == nil {
			s.explain(m)
		}
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("batches: reading status: %w", err)
	}
	return list, nil
}

// lockWaitPattern finds the lock holders a failed batch recorded (see
// describeBlockers).
var lockWaitPattern = regexp.MustCompile(`waiting on a lock held by pids? [0-9, ]*[0-9]`)

// explain fills in the speed, the ETA and its range (see eta.go) from what
// was measured of the run (m), and the reason an unfinished run is held
// back.
func (s *RunStatus) explain(m speedSample) {
	// An unfinished run that has done as many rows as estimated has an
	// estimate that was wrong: its total is unknown, not nearly reached.
	if s.State != StateCompleted && s.RowsDone >= s.RowsEstimated {
		s.RowsEstimated = 0
	}
	batchRows := float64(s.BatchSize)
	if s.BatchesDone > 0 {
		batchRows = float64(s.RowsDone) / float64(s.BatchesDone)
	}
	e := estimateSpeed(m, s.Rate, s.DutyCycle, s.PartitionsActive, batchRows)
	s.RowsPerSecond, s.BusyShare = e.Speed, e.Busy
	// A paused run moves no rows: no speed that decays as the window
	// slides past its last batches, and so no ETA.
	if s.State == StatePaused {
		s.RowsPerSecond, s.BusyShare = 0, 0
	}
	if s.State.Active() && s.RowsPerSecond > 0 && s.RowsEstimated > 0 {
		eta, low, high := e.etaRange(s.RowsEstimated - s.RowsDone)
		s.ETASeconds, s.ETALowSeconds, s.ETAHighSeconds = &eta, &low, &high
	}
	var reasons []string
	switch {
	case s.State == StatePaused:
		reasons = append(reasons, "paused")
	case !s.State.Active():
	default:
		if s.RetryingAttempt > 0 {
			reasons = append(reasons, fmt.Sprintf("retrying a failed batch (attempt %d of %d)", s.RetryingAttempt+1, s.MaxAttempts))
			if s.LastError != nil {
				if lock := lockWaitPattern.FindString(*s.LastError); lock != "" {
					reasons = append(reasons, lock)
				}
			}
		}
		held := s.Health.Holds()
		if held {
			reasons = append(reasons, "database under strain: "+s.Health.String())
		}
		// Within 10% of the limit: the limit, not the work, sets the pace.
		if !held && s.Rate > 0 && s.RowsPerSecond >= 0.9*s.Rate {
			reasons = append(reasons, fmt.Sprintf("rate limit (%s)", FormatRate(s.Rate)))
		}
		if !held && s.DutyCycle > 0 && s.BusyShare >= 0.9*s.DutyCycle {
			reasons = append(reasons, fmt.Sprintf("duty cycle (busy %s of the time, limit %s)", FormatShare(s.BusyShare), FormatDutyCycle(s.DutyCycle)))
		}
		switch {
		case s.WorkersAlive == 0 && s.PartitionsWaiting > 0:
			reasons = append(reasons, fmt.Sprintf("no worker is alive (%d of %d partitions waiting)", s.PartitionsWaiting, s.PartitionsActive))
		case s.WorkersAlive == 0:
			reasons = append(reasons, "no worker is alive")
		case s.PartitionsWaiting > 0:
			reasons = append(reasons, fmt.Sprintf("waiting for workers (%d of %d partitions)", s.PartitionsWaiting, s.PartitionsActive))
		}
	}
	s.HeldBack = strings.Join(reasons, "; ")
}

// LatestRunInfo is the newest run of a version: what "list" shows, and the
// checksum "pending" compares with the definition.
type LatestRunInfo struct {
	RunNumber int
	Direction Direction
	// State is the run's state in the version table.
	State    State
	Checksum string
}

// LatestRuns returns, per version ever enqueued, its newest run.
func LatestRuns(ctx context.Context, q Querier) (map[int64]LatestRunInfo, error) {
	rows, err := q.Query(ctx, inSchema(`SELECT DISTINCT ON (version) version, run_number, direction, state, checksum
FROM backfill_runs ORDER BY version, run_number DESC`))
	if err != nil {
		return nil, fmt.Errorf("batches: reading the version table: %w", err)
	}
	out := map[int64]LatestRunInfo{}
	var (
		v    int64
		info LatestRunInfo
	)
	_, err = pgx.ForEachRow(rows, []any{&v, &info.RunNumber, &info.Direction, &info.State, &info.Checksum}, func() error {
		out[v] = info
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("batches: reading the version table: %w", err)
	}
	return out, nil
}
