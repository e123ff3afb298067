package batches

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Health signals hold a run's batches back, never failing them, while the
// database is under strain (gh-ost's max-lag, max-load and throttle query;
// GitLab's WAL and replication signals). Workers check them on every
// heartbeat and store the result with the run (backfill_runs.health): every
// batch reads it with its partition's lock, and status, the page and the
// metrics show it.
//
// Each signal has a default meant to be safe for a typical OLTP database; a
// backfill's header or "enqueue throttle" changes it, and a negative limit
// ("off") turns it off.

// Defaults of the health signals.
const (
	// MaxReplicaLagDefault: hold while any streaming replica replays more
	// than this behind the primary.
	MaxReplicaLagDefault = 5 * time.Second
	// MaxActiveBackendsDefault: hold while more sessions than this (the
	// backfill's own excluded) are running a statement.
	MaxActiveBackendsDefault = 32
	// MaxTransactionAgeDefault: hold while a transaction has been open this
	// long: it keeps vacuum from removing the dead rows the backfill leaves.
	MaxTransactionAgeDefault = 10 * time.Minute
)

// Signal names, as status and the metrics show them.
const (
	SignalReplicaLag     = "replica_lag"
	SignalActiveBackends = "active_backends"
	SignalTransactionAge = "transaction_age"
	SignalThrottleQuery  = "throttle_query"
	SignalVacuum         = "vacuum"
)

// Signal is one health signal's last reading.
type Signal struct {
	Name string `json:"name"`
	// Value and Limit are seconds for lags and ages, a count for backends,
	// and 1 or 0 for the throttle query and vacuum.
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	// Holds is true when the signal holds the run back.
	Holds bool `json:"holds"`
	// Detail says more: which replica, which session, the query's error.
	Detail string `json:"detail,omitempty"`
}

// Health is the last reading of a run's signals.
type Health struct {
	CheckedAt time.Time `json:"checked_at"`
	Signals   []Signal  `json:"signals"`
}

// Holding returns the signals that hold the run back.
func (h *Health) Holding() []Signal {
	if h == nil {
		return nil
	}
	var out []Signal
	for _, s := range h.Signals {
		if s.Holds {
			out = append(out, s)
		}
	}
	return out
}

// Holds reports whether the reading holds the run back.
func (h *Health) Holds() bool { return len(h.Holding()) > 0 }

// ErrHeldBack: a health signal holds the run back; the batch did nothing.
var ErrHeldBack = errors.New("batches: a health signal holds the run back")

// freshHealth is the SQL of a run's reading (r.health) while it is fresh:
// older than a minute it no longer holds the run back, so that batches are
// not held for ever by a strain long gone when no worker checks any more.
const freshHealth = `CASE WHEN (r.health->>'checked_at')::timestamptz > now() - interval '1 minute' THEN r.health END`

// String says why a reading holds a run back: "replica lag 7.2s > 5s
// (replica standby1); 40 active backends > 32".
func (h *Health) String() string {
	var parts []string
	for _, s := range h.Holding() {
		parts = append(parts, s.String())
	}
	return strings.Join(parts, "; ")
}

func (s Signal) String() string {
	var text string
	switch s.Name {
	case SignalReplicaLag:
		text = fmt.Sprintf("replica lag %s > %s", seconds(s.Value), seconds(s.Limit))
	case SignalActiveBackends:
		text = fmt.Sprintf("%.0f active backends > %.0f", s.Value, s.Limit)
	case SignalTransactionAge:
		text = fmt.Sprintf("a transaction open for %s > %s", seconds(s.Value), seconds(s.Limit))
	case SignalThrottleQuery:
		text = "the throttle query says hold"
	case SignalVacuum:
		text = "vacuum is working on the table"
	default:
		text = s.Name
	}
	if s.Detail != "" {
		text += " (" + s.Detail + ")"
	}
	return text
}

func seconds(f float64) string {
	return time.Duration(f * float64(time.Second)).Round(10 * time.Millisecond).String()
}

// HealthLimits are the limits of a run's signals as in force: 0 or less is
// off.
type HealthLimits struct {
	MaxReplicaLag     time.Duration
	MaxActiveBackends int
	MaxTransactionAge time.Duration
	ThrottleQuery     string
	HoldDuringVacuum  bool
}

// HealthLimits returns the run's limits, defaults filled in.
func (o Options) HealthLimits() HealthLimits {
	l := HealthLimits{
		MaxReplicaLag: o.MaxReplicaLag, MaxActiveBackends: o.MaxActiveBackends, MaxTransactionAge: o.MaxTransactionAge,
		ThrottleQuery: o.ThrottleQuery, HoldDuringVacuum: o.HoldDuringVacuum,
	}
	if l.MaxReplicaLag == 0 {
		l.MaxReplicaLag = MaxReplicaLagDefault
	}
	if l.MaxActiveBackends == 0 {
		l.MaxActiveBackends = MaxActiveBackendsDefault
	}
	if l.MaxTransactionAge == 0 {
		l.MaxTransactionAge = MaxTransactionAgeDefault
	}
	return l
}

// ServerLoad is what the database says of itself, read once per check for
// every run.
type ServerLoad struct {
	// ReplicaLag is the longest replay lag of a streaming replica, in
	// seconds, and Replica its name.
	ReplicaLag float64
	Replica    string
	// ActiveBackends counts client sessions running a statement, apart from
	// the backfill's own.
	ActiveBackends int
	// OldestTransaction is the age of the oldest open transaction in
	// seconds, and OldestPID its session.
	OldestTransaction float64
	OldestPID         int32
}

// ReadServerLoad reads the database's load. ours is the application_name of
// the backfill's own sessions, left out of the active backends and the
// oldest transaction. Replica lag needs the pg_monitor role (or a
// superuser); without it, PostgreSQL hides the lag and it reads 0.
func ReadServerLoad(ctx context.Context, q Querier, ours string) (ServerLoad, error) {
	var l ServerLoad
	// One reading of each view: the most lagging replica, our own sessions
	// left out of the rest.
	err := q.QueryRow(ctx, `
WITH others AS (
	SELECT state, xact_start, pid FROM pg_stat_activity
	WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
		AND application_name IS DISTINCT FROM nullif($1, '')
)
SELECT coalesce(extract(epoch FROM r.replay_lag)::float8, 0), coalesce(r.application_name, ''),
	(SELECT count(*) FROM others WHERE state = 'active')::int,
	coalesce(extract(epoch FROM now() - o.xact_start)::float8, 0), coalesce(o.pid, 0)
FROM (SELECT 1) one
LEFT JOIN LATERAL (SELECT replay_lag, application_name FROM pg_stat_replication
	WHERE replay_lag IS NOT NULL ORDER BY replay_lag DESC LIMIT 1) r ON true
LEFT JOIN LATERAL (SELECT xact_start, pid FROM others WHERE xact_start IS NOT NULL
	ORDER BY xact_start LIMIT 1) o ON true`, ours).
		Scan(&l.ReplicaLag, &l.Replica, &l.ActiveBackends, &l.OldestTransaction, &l.OldestPID)
	if err != nil {
		return l, fmt.Errorf("batches: reading the database's load: %w", err)
	}
	return l, nil
}

// ThrottleQueryTimeout bounds a backfill's throttle query.
const ThrottleQueryTimeout = time.Second

// CheckHealth reads a run's signals against its limits: the server's load,
// and the run's own throttle query and vacuum check, which run in a
// read-only transaction bounded by ThrottleQueryTimeout. A throttle query
// that fails holds the run back, with its error.
func CheckHealth(ctx context.Context, db Beginner, run *Run, load ServerLoad) Health {
	lim := run.Options.HealthLimits()
	var h Health
	if lim.MaxReplicaLag > 0 {
		s := Signal{Name: SignalReplicaLag, Value: load.ReplicaLag, Limit: lim.MaxReplicaLag.Seconds()}
		s.Holds = s.Value > s.Limit
		if s.Holds && load.Replica != "" {
			s.Detail = "replica " + load.Replica
		}
		h.Signals = append(h.Signals, s)
	}
	if lim.MaxActiveBackends > 0 {
		s := Signal{Name: SignalActiveBackends, Value: float64(load.ActiveBackends), Limit: float64(lim.MaxActiveBackends)}
		s.Holds = s.Value > s.Limit
		h.Signals = append(h.Signals, s)
	}
	if lim.MaxTransactionAge > 0 {
		s := Signal{Name: SignalTransactionAge, Value: load.OldestTransaction, Limit: lim.MaxTransactionAge.Seconds()}
		s.Holds = s.Value > s.Limit
		if s.Holds {
			s.Detail = fmt.Sprintf("pid %d", load.OldestPID)
		}
		h.Signals = append(h.Signals, s)
	}
	if lim.ThrottleQuery != "" {
		hold, err := runThrottleQuery(ctx, db, lim.ThrottleQuery)
		s := Signal{Name: SignalThrottleQuery, Value: boolFloat(hold), Limit: 0, Holds: hold || err != nil}
		if err != nil {
			s.Detail = "it failed: " + describeError(err)
		}
		h.Signals = append(h.Signals, s)
	}
	if lim.HoldDuringVacuum {
		busy, err := vacuumBusy(ctx, db, run.Options.Table)
		s := Signal{Name: SignalVacuum, Value: boolFloat(busy), Holds: busy}
		if err != nil {
			s.Detail = "could not be checked: " + describeError(err)
		}
		h.Signals = append(h.Signals, s)
	}
	return h
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// runThrottleQuery runs a user's throttle query read-only and bounded: it
// must return one boolean, true to hold the run back.
func runThrottleQuery(ctx context.Context, db Beginner, query string) (bool, error) {
	var hold bool
	err := boundedRead(ctx, db, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, query).Scan(&hold)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return false, errors.New("it returned no row; it must return one boolean")
	}
	return hold, err
}

// vacuumBusy reports whether a vacuum (or autovacuum) is working on table.
func vacuumBusy(ctx context.Context, db Beginner, table string) (bool, error) {
	var busy bool
	err := boundedRead(ctx, db, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_progress_vacuum WHERE relid = to_regclass($1))`,
			quoteQualified(table)).Scan(&busy)
	})
	return busy, err
}

// boundedRead runs fn in a read-only transaction that gives up after
// ThrottleQueryTimeout, and rolls it back.
func boundedRead(ctx context.Context, db Beginner, fn func(pgx.Tx) error) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	ms := ThrottleQueryTimeout.Milliseconds()
	if _, err := tx.Exec(ctx, `SET TRANSACTION READ ONLY`); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $1, true)`,
		fmt.Sprint(ms)); err != nil {
		return err
	}
	return fn(tx)
}

// StoreHealth records a run's reading, taken now by the database's clock,
// unless another worker stored one less than minAge ago (every live worker
// checks; one reading is enough).
func StoreHealth(ctx context.Context, db Execer, runID int64, h Health, minAge time.Duration) error {
	stored, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("batches: %w", err)
	}
	_, err = db.Exec(ctx, inSchema(`UPDATE backfill_runs SET health = jsonb_set($2::jsonb, '{checked_at}', to_jsonb(now()))
WHERE id = $1 AND state IN ('pending', 'running')
	AND (health IS NULL OR (health->>'checked_at')::timestamptz < now() - $3::interval)`), runID, string(stored), minAge)
	if err != nil {
		return fmt.Errorf("batches: storing the health of run %d: %w", runID, err)
	}
	return nil
}

// Bounds of the health limits given as durations.
const (
	HealthLimitMin = 100 * time.Millisecond
	HealthLimitMax = 24 * time.Hour
)

// CheckThrottleQuery makes sure a throttle query is one statement without
// parameters. It runs read-only, so it cannot change anything either way.
func CheckThrottleQuery(query string) error {
	params, statements := scanSQL(query)
	switch {
	case strings.TrimSpace(query) == "":
		return errors.New("the query is empty")
	case statements != 1:
		return fmt.Errorf("want one statement returning one boolean, got %d statements", statements)
	case len(params) > 0:
		return fmt.Errorf("the query takes no parameters, got @%s", params[0])
	}
	return nil
}
