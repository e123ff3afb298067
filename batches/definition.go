package batches

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Mode says when a backfill runs.
type Mode string

const (
	// ModeAuto backfills are enqueued by "enqueue pending" after a deploy.
	ModeAuto Mode = "auto"
	// ModeManual backfills run only when somebody asks with "enqueue run".
	ModeManual Mode = "manual"
)

// Direction says whether a run applies a backfill or reverts it.
type Direction string

const (
	DirectionUp   Direction = "up"
	DirectionDown Direction = "down"
)

// Defaults for Options fields left at zero.
const (
	BatchSizeDefault   = 1000
	PartitionsDefault  = 8
	MaxAttemptsDefault = 5
)

// Bounds of Options fields. A batch is one statement in one transaction: a
// million rows is far more than one should hold. A rate under one row per
// second is a slip rather than a plan (1e-12 scheduled the next batch three
// centuries ahead); above 1e9 rows per second it limits nothing.
const (
	BatchSizeMax   = 1_000_000
	RateMin        = 1
	RateMax        = 1e9
	PartitionsMax  = 1024
	MaxAttemptsMax = 100

	LockTimeoutMin      = 10 * time.Millisecond
	LockTimeoutMax      = 10 * time.Minute
	StatementTimeoutMin = 100 * time.Millisecond
	StatementTimeoutMax = time.Hour
)

// Options say which key space a backfill walks and how fast.
type Options struct {
	// Table is the table whose key space is walked, optionally schema-qualified
	// ("orders" or "shop.orders").
	Table string `json:"table"`
	// Key is the column batches are cut on; it must be unique and indexed
	// (normally the primary key): bigint, integer, uuid and text all work.
	Key string `json:"key"`
	// Where is an optional SQL condition that limits the rows batches are cut
	// from, so batches hold only rows that still need work.
	Where string `json:"where,omitempty"`
	// DownWhere is Where for revert runs: the rows the revert must undo are
	// the ones Where no longer matches.
	DownWhere string `json:"down_where,omitempty"`
	// Verify is the SQL condition every row must satisfy once the backfill
	// is done, checked by "enqueue verify" (verify.go); without it, verify
	// counts the rows Where still selects.
	Verify string `json:"verify,omitempty"`
	// Lossy is the SQL condition of the rows whose value would not survive
	// the backfill's conversion, and OnLoss what becomes of them: a run is
	// refused while any exists unless OnLoss is OnLossNull (loss.go).
	Lossy  string `json:"lossy,omitempty"`
	OnLoss string `json:"on_loss,omitempty"`
	// BatchSize is the number of rows per batch (BatchSizeDefault when 0);
	// with BatchTime, the first batch's.
	BatchSize int `json:"batch"`
	// BatchTime, when positive, is the duration every batch aims at: the
	// size adapts between BatchMin and BatchMax (0: BatchMinDefault and
	// BatchMaxDefault). See batch_size.go. 0 with no BatchSize takes
	// BatchTimeDefault; BatchTimeOff is a fixed size.
	BatchTime time.Duration `json:"batch_time,omitempty"`
	BatchMin  int           `json:"batch_min,omitempty"`
	BatchMax  int           `json:"batch_max,omitempty"`
	// Rate is the most rows per second the run may process; 0 is unlimited.
	Rate float64 `json:"rate,omitempty"`
	// DutyCycle is the share of wall time the run's batches may keep the
	// database busy, across the pool (duty_cycle.go): 0 takes
	// DutyCycleDefault, DutyCycleOff is no limit.
	DutyCycle float64 `json:"duty_cycle,omitempty"`
	// Partitions is how many key ranges the run is split into so that several
	// workers can work on it at once (PartitionsDefault when 0).
	Partitions int `json:"partitions"`
	// MaxAttempts is how often a failing batch is tried before it is recorded as
	// failed (MaxAttemptsDefault when 0).
	MaxAttempts int `json:"attempts"`
	// LockTimeout bounds how long a batch waits for a row or table lock
	// (0: the worker's --lock-timeout).
	LockTimeout time.Duration `json:"lock_timeout,omitempty"`
	// StatementTimeout bounds one batch's statement (0: the worker's --statement-timeout).
	StatementTimeout time.Duration `json:"statement_timeout,omitempty"`

	// Health signals (health.go): batches are held back while a replica
	// lags more than MaxReplicaLag, more than MaxActiveBackends other
	// sessions run a statement, a transaction is older than
	// MaxTransactionAge, ThrottleQuery returns true, or (HoldDuringVacuum)
	// a vacuum works on the table. 0 takes the default; a negative limit
	// is off.
	MaxReplicaLag     time.Duration `json:"max_replica_lag,omitempty"`
	MaxActiveBackends int           `json:"max_active_backends,omitempty"`
	MaxTransactionAge time.Duration `json:"max_transaction_age,omitempty"`
	ThrottleQuery     string        `json:"throttle_query,omitempty"`
	HoldDuringVacuum  bool          `json:"hold_during_vacuum,omitempty"`
}

// WithDefaults returns o with zero fields set to their defaults: the
// gentle pace (duty_cycle.go) unless the definition sets its own.
func (o Options) WithDefaults() Options { return o.withPaceDefaults().withShapeDefaults() }

// withPaceDefaults sets the gentle pace: adaptive batches unless a batch
// size is given, and the default duty cycle.
func (o Options) withPaceDefaults() Options {
	if o.BatchTime == 0 && o.BatchSize == 0 {
		o.BatchTime = BatchTimeDefault
	}
	if o.DutyCycle == 0 {
		o.DutyCycle = DutyCycleDefault
	}
	return o
}

// withShapeDefaults sets the batch size, partitions and attempts.
func (o Options) withShapeDefaults() Options {
	if o.BatchSize == 0 {
		o.BatchSize = BatchSizeDefault
	}
	if o.Partitions == 0 {
		o.Partitions = PartitionsDefault
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = MaxAttemptsDefault
	}
	return o
}

// ForDirection returns the options a run in dir uses: a revert cuts its
// batches with DownWhere instead of Where.
func (o Options) ForDirection(dir Direction) Options {
	if dir == DirectionDown {
		o.Where = o.DownWhere
	}
	o.DownWhere = ""
	return o
}

func (o Options) validate() error {
	switch {
	case o.Table == "":
		return fmt.Errorf("table is missing")
	case o.Key == "":
		return fmt.Errorf("key is missing")
	case o.BatchSize < 1 || o.BatchSize > BatchSizeMax:
		return fmt.Errorf("batch must be between 1 and %d, got %d", BatchSizeMax, o.BatchSize)
	case o.BatchTime > 0 && !within(o.BatchTime, BatchTimeMin, BatchTimeMax):
		return fmt.Errorf("batch_time must be between %s and %s, got %s", BatchTimeMin, BatchTimeMax, o.BatchTime)
	case o.BatchMin < 0 || o.BatchMin > BatchSizeMax || o.BatchMax < 0 || o.BatchMax > BatchSizeMax:
		return fmt.Errorf("batch_min and batch_max must be between 1 and %d, got %d and %d", BatchSizeMax, o.BatchMin, o.BatchMax)
	case o.BatchMin != 0 && o.BatchMax != 0 && o.BatchMin > o.BatchMax:
		return fmt.Errorf("batch_min (%d) must not be above batch_max (%d)", o.BatchMin, o.BatchMax)
	case (o.BatchMin != 0 || o.BatchMax != 0) && o.BatchTime <= 0:
		return fmt.Errorf("batch_min and batch_max bound an adaptive batch: set batch_time too")
	case !validDutyCycle(o.DutyCycle):
		return fmt.Errorf("duty_cycle must be off or between %s and %s, got %g", FormatDutyCycle(DutyCycleMin), FormatDutyCycle(DutyCycleMax), o.DutyCycle)
	case !validRate(o.Rate):
		return fmt.Errorf("rate must be 0 (unlimited) or between %d and %.0f rows per second, got %g", RateMin, RateMax, o.Rate)
	case o.Partitions < 1 || o.Partitions > PartitionsMax:
		return fmt.Errorf("partitions must be between 1 and %d, got %d", PartitionsMax, o.Partitions)
	case o.MaxAttempts < 1 || o.MaxAttempts > MaxAttemptsMax:
		return fmt.Errorf("attempts must be between 1 and %d, got %d", MaxAttemptsMax, o.MaxAttempts)
	case o.LockTimeout != 0 && !within(o.LockTimeout, LockTimeoutMin, LockTimeoutMax):
		return fmt.Errorf("lock_timeout must be 0 (the worker's --lock-timeout) or between %s and %s, got %s", LockTimeoutMin, LockTimeoutMax, o.LockTimeout)
	case o.StatementTimeout != 0 && !within(o.StatementTimeout, StatementTimeoutMin, StatementTimeoutMax):
		return fmt.Errorf("statement_timeout must be 0 (the worker's --statement-timeout) or between %s and %s, got %s", StatementTimeoutMin, StatementTimeoutMax, o.StatementTimeout)
	}
	for _, l := range []struct {
		key string
		d   time.Duration
	}{{"max_replica_lag", o.MaxReplicaLag}, {"max_transaction_age", o.MaxTransactionAge}} {
		if l.d > 0 && !within(l.d, HealthLimitMin, HealthLimitMax) {
			return fmt.Errorf("%s must be off or between %s and %s, got %s", l.key, HealthLimitMin, HealthLimitMax, l.d)
		}
	}
	if o.MaxActiveBackends > 100_000 {
		return fmt.Errorf("max_active_backends must be off or between 1 and 100000, got %d", o.MaxActiveBackends)
	}
	if o.ThrottleQuery != "" {
		if err := CheckThrottleQuery(o.ThrottleQuery); err != nil {
			return fmt.Errorf("throttle_query: %w", err)
		}
	}
	// Empty conditions are no conditions here; a header must not leave
	// where empty (setOption).
	if err := checkOnLoss(o.OnLoss); err != nil {
		return err
	}
	if o.OnLoss != "" && o.Lossy == "" {
		return fmt.Errorf("on_loss decides what becomes of lossy rows: set lossy too")
	}
	for _, c := range []struct{ key, cond string }{{"where", o.Where}, {"down_where", o.DownWhere}, {"verify", o.Verify}, {"lossy", o.Lossy}} {
		if c.cond == "" {
			continue
		}
		if err := checkCondition(c.cond); err != nil {
			return fmt.Errorf("%s: %w", c.key, err)
		}
	}
	return nil
}

// validRate reports whether r is 0 (unlimited) or within RateMin..RateMax.
// NaN fails both comparisons.
func validRate(r float64) bool { return r == 0 || r >= RateMin && r <= RateMax }

func within(d, lo, hi time.Duration) bool { return d >= lo && d <= hi }

// Batch is one slice of a partition's key space. First and Last are actual key
// values (both inclusive) in their text form; compare them in SQL, where the
// key column's type and collation decide the order.
type Batch struct {
	RunID     int64
	Version   int64
	Partition int
	First     string
	Last      string
	// Rows is the number of keys between First and Last (matching Where).
	Rows int64
}

// BatchFunc processes one batch inside tx and returns the number of rows it
// changed. It must not commit or roll back tx.
type BatchFunc func(ctx context.Context, tx pgx.Tx, b Batch) (int64, error)

// Definition is one backfill, from a SQL file or Go code.
type Definition struct {
	Version int64
	Name    string
	Mode    Mode
	Options Options
	// Source is the file the definition came from, or "go" for Go backfills.
	Source string
	// UpSQL and DownSQL hold a SQL file's statements; they are stored with the
	// run so that workers execute exactly what was enqueued.
	UpSQL   string
	DownSQL string
	// Up and Down process one batch; Down is nil when the backfill cannot be
	// reverted.
	Up   BatchFunc
	Down BatchFunc
	// Checksum identifies the definition's content, to warn when a file was
	// changed after its run was enqueued.
	Checksum string
}

// Label is how messages name a definition: "20260301120000_fill_prices".
func (d *Definition) Label() string { return fmt.Sprintf("%d_%s", d.Version, d.Name) }

// IsGo reports whether the definition is Go code rather than a SQL file.
func (d *Definition) IsGo() bool { return d.Source == SourceGo }

// SourceGo is Definition.Source for Go backfills.
const SourceGo = "go"

// Step returns the batch function for direction, or nil when there is none.
func (d *Definition) Step(dir Direction) BatchFunc {
	if dir == DirectionDown {
		return d.Down
	}
	return d.Up
}

// storedDefinition is what a run keeps of its definition, so that a worker
// runs the statement that was enqueued even if the file changed since.
type storedDefinition struct {
	Options Options `json:"options"`
	UpSQL   string  `json:"up_sql,omitempty"`
	DownSQL string  `json:"down_sql,omitempty"`
	Source  string  `json:"source"`
}

func checksumOf(parts ...any) string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, p := range parts {
		_ = enc.Encode(p) // hashing cannot fail
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
