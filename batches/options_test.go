package batches

import (
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func validOptions() Options {
	return Options{Table: "orders", Key: "id"}.WithDefaults()
}

// Options.validate is what Go backfills are checked with: every bound a
// header has holds for them too.
func TestOptionsValidate_Bounds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		set  func(*Options)
		want string // "" for valid
	}{
		{"defaults", func(*Options) {}, ""},
		{"batch max", func(o *Options) { o.BatchSize = 1_000_000 }, ""},
		{"batch above max", func(o *Options) { o.BatchSize = 1_000_001 }, "batch must be between 1 and 1000000, got 1000001"},
		{"batch max int", func(o *Options) { o.BatchSize = 9223372036854775807 }, "batch must be between 1 and 1000000"},
		{"batch negative", func(o *Options) { o.BatchSize = -1 }, "batch must be between 1 and 1000000"},
		{"rate unlimited", func(o *Options) { o.Rate = 0 }, ""},
		{"rate one", func(o *Options) { o.Rate = 1 }, ""},
		{"rate max", func(o *Options) { o.Rate = 1e9 }, ""},
		{"rate tiny", func(o *Options) { o.Rate = 1e-12 }, "rate must be 0 (unlimited) or between 1 and 1000000000 rows per second, got 1e-12"},
		{"rate half", func(o *Options) { o.Rate = 0.5 }, "rate must be 0"},
		{"rate huge", func(o *Options) { o.Rate = 1e10 }, "rate must be 0"},
		{"rate negative", func(o *Options) { o.Rate = -1 }, "rate must be 0"},
		{"lock timeout min", func(o *Options) { o.LockTimeout = 10 * time.Millisecond }, ""},
		{"lock timeout max", func(o *Options) { o.LockTimeout = 10 * time.Minute }, ""},
		{"lock timeout short", func(o *Options) { o.LockTimeout = time.Millisecond }, "lock_timeout must be 0 (the worker's --lock-timeout) or between 10ms and 10m0s, got 1ms"},
		{"lock timeout long", func(o *Options) { o.LockTimeout = time.Hour }, "lock_timeout must be"},
		{"lock timeout negative", func(o *Options) { o.LockTimeout = -time.Second }, "lock_timeout must be"},
		{"statement timeout min", func(o *Options) { o.StatementTimeout = 100 * time.Millisecond }, ""},
		{"statement timeout max", func(o *Options) { o.StatementTimeout = time.Hour }, ""},
		{"statement timeout short", func(o *Options) { o.StatementTimeout = 99 * time.Millisecond }, "statement_timeout must be 0 (the worker's --statement-timeout) or between 100ms and 1h0m0s, got 99ms"},
		{"statement timeout long", func(o *Options) { o.StatementTimeout = 2 * time.Hour }, "statement_timeout must be"},
		{"batch time", func(o *Options) { o.BatchTime, o.BatchMin, o.BatchMax = 200*time.Millisecond, 50, 5000 }, ""},
		{"batch time short", func(o *Options) { o.BatchTime = time.Millisecond }, "batch_time must be between 10ms and 1m0s, got 1ms"},
		{"batch bounds crossed", func(o *Options) { o.BatchTime, o.BatchMin, o.BatchMax = time.Second, 500, 50 }, "batch_min (500) must not be above batch_max (50)"},
		{"batch bounds without time", func(o *Options) { o.BatchTime, o.BatchMax = 0, 5000 }, "batch_min and batch_max bound an adaptive batch: set batch_time too"},
		{"batch bounds with time off", func(o *Options) { o.BatchTime, o.BatchMax = BatchTimeOff, 5000 }, "batch_min and batch_max bound an adaptive batch: set batch_time too"},
		{"duty cycle off", func(o *Options) { o.DutyCycle = DutyCycleOff }, ""},
		{"duty cycle NaN", func(o *Options) { o.DutyCycle = math.NaN() }, "duty_cycle must be off or between 1% and 10000%"},
		{"where escapes", func(o *Options) { o.Where = "1=1) OR (1=1" }, "where: a ')' at character 4 closes a parenthesis the condition did not open"},
		{"down_where escapes", func(o *Options) { o.DownWhere = "true) OR (true" }, "down_where: a ')'"},
		{"where blank", func(o *Options) { o.Where = "  " }, "where: the condition is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := validOptions()
			tc.set(&o)
			err := o.validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestParseSQL_BoundsAndTimeouts(t *testing.T) {
	t.Parallel()
	def, err := ParseSQL(testHeader + "-- batch: 1000000\n-- rate: 1e9\n-- lock_timeout: 500ms\n-- statement_timeout: 1m\n" + validStatement)
	require.NoError(t, err)
	require.Equal(t, 1_000_000, def.Options.BatchSize)
	require.Equal(t, 1e9, def.Options.Rate)
	require.Equal(t, 500*time.Millisecond, def.Options.LockTimeout)
	require.Equal(t, time.Minute, def.Options.StatementTimeout)

	def, err = ParseSQL(testHeader + "-- LOCK_TIMEOUT : 10m\n-- statement_timeout: 100ms\n" + validStatement)
	require.NoError(t, err)
	require.Equal(t, 10*time.Minute, def.Options.LockTimeout)
	require.Equal(t, 100*time.Millisecond, def.Options.StatementTimeout)

	def, err = ParseSQL(testHeader + "-- batch_time: 250ms\n-- batch_min: 20\n-- batch_max: 20000\n" + validStatement)
	require.NoError(t, err)
	require.Equal(t, 250*time.Millisecond, def.Options.BatchTime)
	require.Equal(t, []int{20, 20000}, []int{def.Options.BatchMin, def.Options.BatchMax})

	def, err = ParseSQL(testHeader + "-- max_replica_lag: off\n-- max_active_backends: 64\n-- max_transaction_age: 30m\n-- throttle_query: SELECT count(*) > 5 FROM pg_stat_activity\n-- hold_during_vacuum: true\n" + validStatement)
	require.NoError(t, err)
	lim := def.Options.HealthLimits()
	require.Equal(t, HealthLimits{MaxReplicaLag: -1, MaxActiveBackends: 64, MaxTransactionAge: 30 * time.Minute,
		ThrottleQuery: "SELECT count(*) > 5 FROM pg_stat_activity", HoldDuringVacuum: true}, lim)
	def, err = ParseSQL(testHeader + validStatement)
	require.NoError(t, err)
	require.Equal(t, HealthLimits{MaxReplicaLag: MaxReplicaLagDefault, MaxActiveBackends: MaxActiveBackendsDefault,
		MaxTransactionAge: MaxTransactionAgeDefault}, def.Options.HealthLimits(), "the defaults")

	// Left out, they are 0: the worker's flags decide.
	def, err = ParseSQL(testHeader + validStatement)
	require.NoError(t, err)
	require.Zero(t, def.Options.LockTimeout)
	require.Zero(t, def.Options.StatementTimeout)

	for _, tc := range []struct{ name, line, want string }{
		{"batch above max", "-- batch: 1000001", "batch: must be at most 1000000"},
		{"batch max int", "-- batch: 9223372036854775807", "batch: must be at most 1000000"},
		{"rate tiny", "-- rate: 1e-12", `rate: want 0 (unlimited) or rows per second between 1 and 1000000000, got "1e-12"`},
		{"rate half", "-- rate: 0.5", `"0.5"`},
		{"rate huge", "-- rate: 2e9", `"2e9"`},
		{"lock timeout no unit", "-- lock_timeout: 2", `lock_timeout: want a duration between 10ms and 10m0s (such as 500ms, 2s or 1m), got "2"`},
		{"lock timeout zero", "-- lock_timeout: 0", `lock_timeout: want a duration`},
		{"lock timeout short", "-- lock_timeout: 5ms", `"5ms"`},
		{"lock timeout long", "-- lock_timeout: 11m", `"11m"`},
		{"lock timeout negative", "-- lock_timeout: -1s", `"-1s"`},
		{"lock timeout empty", "-- lock_timeout:", `lock_timeout: want a duration`},
		{"lock timeout words", "-- lock_timeout: two seconds", `"two seconds"`},
		{"statement timeout short", "-- statement_timeout: 50ms", `statement_timeout: want a duration between 100ms and 1h0m0s (such as 500ms, 2s or 1m), got "50ms"`},
		{"statement timeout long", "-- statement_timeout: 61m", `"61m"`},
		{"statement timeout huge", "-- statement_timeout: 99999999999h", `"99999999999h"`},
		{"replica lag no unit", "-- max_replica_lag: 5", `max_replica_lag: want a duration between 100ms and 24h0m0s (such as 500ms, 2s or 1m), got "5", or off`},
		{"transaction age zero", "-- max_transaction_age: 0s", `max_transaction_age: want a duration`},
		{"active backends zero", "-- max_active_backends: 0", "max_active_backends: want a positive whole number"},
		{"throttle query two statements", "-- throttle_query: SELECT true; SELECT false", "throttle_query: want one statement returning one boolean, got 2 statements"},
		{"throttle query parameter", "-- throttle_query: SELECT @x", "throttle_query: the query takes no parameters, got @x"},
		{"vacuum not a bool", "-- hold_during_vacuum: sometimes", `hold_during_vacuum: want true or false, got "sometimes"`},
		{"batch time no unit", "-- batch_time: 200", `batch_time: want a duration between 10ms and 1m0s (such as 500ms, 2s or 1m), got "200"`},
		{"batch time long", "-- batch_time: 2m", `"2m"`},
		{"batch min zero", "-- batch_min: 0", "batch_min: want a positive whole number"},
		{"batch max above max", "-- batch_max: 1000001", "batch_max: must be at most 1000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseSQL(testHeader + tc.line + "\n" + validStatement)
			requireFileError(t, err, "", 3, tc.want)
		})
	}
}

type checksumGo struct{}

func (checksumGo) Version() int64 { return 42 }
func (checksumGo) Name() string   { return "fill_things" }
func (checksumGo) Mode() Mode     { return ModeManual }
func (checksumGo) Options() Options {
	return Options{Table: "shop.things", Key: "id", Where: "x IS NULL", BatchSize: 500, Rate: 250, Partitions: 4, MaxAttempts: 3}
}
func (checksumGo) ProcessBatch(context.Context, pgx.Tx, Batch) (int64, error) { return 0, nil }

// Definitions that do not set the timeouts keep their checksums, so adding
// the fields flags no drift on runs enqueued before; the gentle pace's
// defaults leave them alone too, though a new run records its duty cycle.
func TestOptions_TimeoutsLeaveOldChecksumsAlone(t *testing.T) {
	t.Parallel()
	// Both values were recorded before LockTimeout and StatementTimeout
	// existed, the stored form before the default duty cycle.
	def := definitionOf(checksumGo{})
	require.Equal(t, "61cbcbda3d04bd67", def.Checksum)
	stored, err := json.Marshal(storedDefinition{Options: def.Options, UpSQL: "u", Source: "go"})
	require.NoError(t, err)
	require.JSONEq(t, `{"options":{"table":"shop.things","key":"id","where":"x IS NULL","batch":500,"rate":250,"duty_cycle":0.2,"partitions":4,"attempts":3},"up_sql":"u","source":"go"}`, string(stored))

	// Set, they count.
	o := def.Options
	o.LockTimeout, o.StatementTimeout = 2*time.Second, 30*time.Second
	withTimeouts, err := json.Marshal(o)
	require.NoError(t, err)
	require.Contains(t, string(withTimeouts), `"lock_timeout":2000000000`)
	require.Contains(t, string(withTimeouts), `"statement_timeout":30000000000`)
	require.NotEqual(t, def.Checksum, checksumOf(def.Name, def.Mode, o, ""))

	// A stored run's options read back the same.
	var back Options
	require.NoError(t, json.Unmarshal(withTimeouts, &back))
	require.Equal(t, o, back)
}

// A file that says nothing of its pace gets the gentle one: adaptive
// batches of about BatchTimeDefault and the DutyCycleDefault; setting a
// batch keeps it fixed, and "off" turns either off.
func TestParseSQL_GentleDefaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, header string
		batch        int
		batchTime    time.Duration
		duty         float64
	}{
		{"nothing said", "", BatchSizeDefault, BatchTimeDefault, DutyCycleDefault},
		{"a batch: fixed", "-- batch: 500\n", 500, 0, DutyCycleDefault},
		{"a batch and a batch time", "-- batch: 500\n-- batch_time: 1s\n", 500, time.Second, DutyCycleDefault},
		{"batch time off", "-- batch_time: off\n", BatchSizeDefault, BatchTimeOff, DutyCycleDefault},
		{"duty cycle off", "-- duty_cycle: off\n", BatchSizeDefault, BatchTimeDefault, DutyCycleOff},
		{"duty cycle set", "-- duty_cycle: 150%\n", BatchSizeDefault, BatchTimeDefault, 1.5},
		{"bounds only", "-- batch_min: 50\n", BatchSizeDefault, BatchTimeDefault, DutyCycleDefault},
	} {
		t.Run(tc.name, func(t *testing.T) {
			def, err := ParseSQL(testHeader + tc.header + validStatement)
			require.NoError(t, err)
			o := def.Options
			require.Equal(t, tc.batch, o.BatchSize)
			require.Equal(t, tc.batchTime, o.BatchTime)
			require.Equal(t, tc.batchTime > 0, o.Adaptive())
			require.Equal(t, tc.duty, o.DutyCycle)
		})
	}
	_, err := ParseSQL(testHeader + "-- batch: 500\n-- batch_min: 50\n" + validStatement)
	require.ErrorContains(t, err, "batch_min and batch_max bound an adaptive batch: set batch_time too")
}
