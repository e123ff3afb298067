// Package cli holds what the enqueue and worker commands share: settings
// taken from flags, then the environment, then defaults; connections; logs.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
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
}

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
	if withDir {
		fs.StringVar(&s.Dir, "dir", env("BACKFILL_DIR", BackfillDirDefault), "directory of backfill files (env BACKFILL_DIR)")
	}
	fs.StringVar(&s.LogLevel, "log-level", env("LOG_LEVEL", "info"), "log level: debug, info, warn or error (env LOG_LEVEL)")
	fs.StringVar(&s.LogFormat, "log-format", env("LOG_FORMAT", "text"), "log format: text or json (env LOG_FORMAT)")
}

// OpenPool connects to PostgreSQL. Errors never include the password.
func (s *Settings) OpenPool(ctx context.Context) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(s.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("--database-url %s is not a valid connection string: %s", Redact(s.DatabaseURL), redactIn(err.Error(), s.DatabaseURL))
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

// Logger builds the process's logger on w.
func (s *Settings) Logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", s.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch s.LogFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", s.LogFormat)
}

// Redact returns a connection string with its password replaced by "xxxxx",
// for messages. Strings it cannot parse are replaced whole.
func Redact(conn string) string {
	u, err := url.Parse(conn)
	if err != nil || u.Scheme == "" {
		if strings.Contains(conn, "password") {
			return "(connection string hidden: it holds a password)"
		}
		return conn
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// redactIn removes the password of conn from a message.
func redactIn(msg, conn string) string {
	if u, err := url.Parse(conn); err == nil {
		if pw, has := u.User.Password(); has && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
		if pw := u.Query().Get("password"); pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	return msg
}

// ParseArgs parses flags that may stand before, between or after the
// positional arguments, and returns the positional ones.
func ParseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
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

// UsageError is bad command-line input; binaries exit 2 for it.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError.
func Usagef(format string, args ...any) error { return &UsageError{Msg: fmt.Sprintf(format, args...)} }

// ExitCode maps an error from a command to the process's exit code.
func ExitCode(err error) int {
	var ue *UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		return 2
	}
	return 1
}

// Hostname names this machine in the version table.
func Hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}
