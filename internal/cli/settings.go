// Package cli holds what the enqueue and worker commands share: settings
// taken from flags, then the environment, then defaults; connections; logs.
package cli

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/logsummary"
)

// DatabaseURLDefault is the local server, used when neither --database-url
// nor DATABASE_URL is set.
const DatabaseURLDefault = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// BackfillDirDefault is the backfill directory when neither --dir nor
// BACKFILL_DIR is set.
const BackfillDirDefault = "backfills"

// Settings are the values both binaries share.
type Settings struct {
	DatabaseURL string
	RedisURL    string
	Dir         string
	LogLevel    string
	LogFormat   string
	// Schema holds the engine's tables and River's (batches.SetSchema).
	Schema string
	// MaxConns, when set, caps the connection pool and closes connections
	// idle for PoolIdleTime (the worker sizes it from its concurrency).
	MaxConns int
	// Statements says how the pool sends statements (unnamed, unless the
	// worker's --pool-mode allows more); a default_query_exec_mode in the
	// URL wins.
	Statements Statements
	// Pooler is set by OpenPool when StatementsPreparedUnlessPooled fell
	// back to unnamed statements: why.
	Pooler string
}

// ApplicationName is the binaries' application_name unless the URL sets
// one.
const ApplicationName = "backfill"

// ConnectTimeoutDefault bounds connecting when the URL sets no connect_timeout.
const ConnectTimeoutDefault = 10 * time.Second

// PoolIdleTime is how long a capped pool keeps an idle connection.
const PoolIdleTime = 10 * time.Second

// Bind registers the shared flags on fs, with the environment's values as
// defaults so that a flag wins over the environment, which wins over the
// built-in default. withDir adds --dir.
func (s *Settings) Bind(fs *flag.FlagSet, getenv func(string) string, withDir bool) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&s.DatabaseURL, "database-url", env("DATABASE_URL", DatabaseURLDefault), "PostgreSQL connection URL (env DATABASE_URL)")
	fs.StringVar(&s.RedisURL, "redis-url", env("REDIS_URL", ""), "Redis URL, for Go backfills that write to Redis (env REDIS_URL)")
	fs.StringVar(&s.Schema, "schema", env("BACKFILL_SCHEMA", batches.SchemaDefault), "schema of the engine's tables and River's (env BACKFILL_SCHEMA)")
	if withDir {
		fs.StringVar(&s.Dir, "dir", env("BACKFILL_DIR", BackfillDirDefault), "directory of backfill files (env BACKFILL_DIR)")
	}
}

// BindLogging registers --log-level and --log-format on fs.
func (s *Settings) BindLogging(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&s.LogLevel, "log-level", cmp.Or(getenv("LOG_LEVEL"), "info"), "log level: debug, info, warn or error (env LOG_LEVEL)")
	fs.StringVar(&s.LogFormat, "log-format", cmp.Or(getenv("LOG_FORMAT"), "text"), "log format: text or json (env LOG_FORMAT)")
}

// OpenPool connects to PostgreSQL, after choosing the schema of the
// engine's tables (the binaries' first use of the database). Errors never
// include the password.
func (s *Settings) OpenPool(ctx context.Context) (*pgxpool.Pool, error) {
	if err := batches.SetSchema(cmp.Or(s.Schema, batches.SchemaDefault)); err != nil {
		return nil, fmt.Errorf("--schema: %w", err)
	}
	cfg, err := pgxpool.ParseConfig(s.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("--database-url %s is not a valid connection string: %s", Redact(s.DatabaseURL), redactIn(err.Error(), s.DatabaseURL))
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		// Names the sessions in pg_stat_activity, and keeps them out of the
		// health signals' count of the application's active sessions.
		cfg.ConnConfig.RuntimeParams["application_name"] = ApplicationName
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// An unreachable host must not hang a deploy for the system's TCP
		// timeout; connect_timeout in the URL overrides this.
		cfg.ConnConfig.ConnectTimeout = ConnectTimeoutDefault
	}
	if !strings.Contains(s.DatabaseURL, "default_query_exec_mode") {
		// After the connect timeout: finding a pooler connects once.
		mode, pooler, err := s.execMode(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("connecting to %s: %s", Redact(s.DatabaseURL), redactIn(err.Error(), s.DatabaseURL))
		}
		cfg.ConnConfig.DefaultQueryExecMode, s.Pooler = mode, pooler
	}
	if s.MaxConns > 0 {
		// A worker's budget: what it needs at most, none kept while idle.
		cfg.MaxConns = int32(s.MaxConns)
		cfg.MinConns = 0
		cfg.MaxConnIdleTime = PoolIdleTime
		cfg.HealthCheckPeriod = PoolIdleTime / 2
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %s", Redact(s.DatabaseURL), redactIn(err.Error(), s.DatabaseURL))
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to %s: %s", Redact(s.DatabaseURL), redactIn(err.Error(), s.DatabaseURL))
	}
	return pool, nil
}

// OpenRedis connects to Redis when a URL is set, and returns nil otherwise.
func (s *Settings) OpenRedis(ctx context.Context) (*redis.Client, error) {
	if s.RedisURL == "" {
		return nil, nil
	}
	opts, err := redis.ParseURL(s.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("--redis-url %s is not a valid Redis URL: %s", Redact(s.RedisURL), redactIn(err.Error(), s.RedisURL))
	}
	client := redis.NewClient(opts)
	if err := client.Ping(ctx).Err(); err != nil {
		client.Close()
		return nil, fmt.Errorf("connecting to Redis at %s: %s", Redact(s.RedisURL), redactIn(err.Error(), s.RedisURL))
	}
	return client, nil
}

// Logger builds the process's logger on w. Warnings and errors that repeat
// (River's and ours while PostgreSQL is down, say) are written once and then
// summarised every 30s by logsummary; call logsummary.CloseLogger on the
// logger at shutdown to write the summaries still pending.
func (s *Settings) Logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", s.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch s.LogFormat {
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", s.LogFormat)
	}
	return slog.New(logsummary.New(h, logsummary.Options{})), nil
}

// ParseArgs parses flags that may stand before, between or after the
// positional arguments, and returns the positional ones. The flag package
// prints nothing meanwhile, so that a bad flag is reported in one line by
// the caller; -h or --help calls fs.Usage and returns flag.ErrHelp.
func ParseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	usage, output := fs.Usage, fs.Output()
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	restore := func() { fs.Usage = usage; fs.SetOutput(output) }
	defer restore()
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) && usage != nil {
				restore()
				usage()
			}
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// ExitUsage is the exit code for bad command-line input (EX_USAGE), kept
// apart from the codes commands give their own outcomes (wait: 1 and 2).
const ExitUsage = 64

// UsageError is bad command-line input; binaries exit ExitUsage for it.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError.
func Usagef(format string, args ...any) error { return &UsageError{Msg: fmt.Sprintf(format, args...)} }

// ExitError is an outcome with an exit code of its own.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode maps an error from a command to the process's exit code.
func ExitCode(err error) int {
	var (
		ue *UsageError
		ee *ExitError
	)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		return ExitUsage
	case errors.As(err, &ee):
		return ee.Code
	}
	return 1
}

// Actor names who runs a command, for the run's history: user@host.
func Actor() string {
	name := cmp.Or(os.Getenv("USER"), os.Getenv("LOGNAME"))
	if u, err := user.Current(); err == nil && name == "" {
		name = u.Username
	}
	return cmp.Or(name, "unknown") + "@" + Hostname()
}

// Hostname names this machine in the version table.
func Hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}
