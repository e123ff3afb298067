// Package testdb gives each test its own PostgreSQL database, copied from a
// template that has River's schema and the version table installed, and
// drops it when the test ends.
//
// The server comes from TEST_DATABASE_URL, else DATABASE_URL, else the local
// server. Call Main from TestMain so that the template is dropped at the end.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/backfill/backfill/batches"
)

var (
	mu       sync.Mutex
	template string
)

// ServerURL is the server tests use, pointing at its maintenance database.
func ServerURL() string {
	for _, name := range []string{"TEST_DATABASE_URL", "DATABASE_URL"} {
		if v := os.Getenv(name); v != "" {
			return v
		}
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// WithDatabase returns the server URL pointing at database name.
func WithDatabase(name string) string {
	u, err := url.Parse(ServerURL())
	if err != nil {
		panic(fmt.Sprintf("testdb: server URL does not parse: %v", err))
	}
	u.Path = "/" + name
	return u.String()
}

// SearchPath is the search_path of the pools tests get: public, then the
// engine's schema.
var SearchPath = "public, " + pgx.Identifier{batches.SchemaDefault}.Sanitize()

// Main runs the package's tests and drops the template afterwards.
func Main(m *testing.M) {
	code := m.Run()
	mu.Lock()
	if template != "" {
		_ = admin(context.Background(), fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", pgx.Identifier{template}.Sanitize()))
	}
	mu.Unlock()
	os.Exit(code)
}

// NewEmpty creates a database for t without any schema, and returns its URL
// and a pool on it. Both go away when t ends.
func NewEmpty(t testing.TB) (string, *pgxpool.Pool) {
	t.Helper()
	name := "bft_" + randomSuffix()
	if err := admin(context.Background(), "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("testdb: creating database: %v", err)
	}
	return WithDatabase(name), connect(t, name)
}

// New creates a database for t with the schema installed and returns its URL
// and a pool on it. Both go away when t ends.
func New(t testing.TB) (string, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	mu.Lock()
	if template == "" {
		name := "bft_template_" + randomSuffix()
		if err := admin(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			mu.Unlock()
			t.Fatalf("testdb: creating template: %v", err)
		}
		pool, err := pgxpool.New(ctx, WithDatabase(name))
		if err == nil {
			_, err = batches.Migrate(ctx, pool, batches.MigrateOptions{})
			pool.Close()
		}
		if err != nil {
			mu.Unlock()
			t.Fatalf("testdb: migrating template: %v", err)
		}
		template = name
	}
	name := "bft_" + randomSuffix()
	err := admin(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", pgx.Identifier{name}.Sanitize(), pgx.Identifier{template}.Sanitize()))
	mu.Unlock()
	if err != nil {
		t.Fatalf("testdb: creating database: %v", err)
	}
	return WithDatabase(name), connect(t, name)
}

// connect opens a pool on database name and drops the database when t ends.
func connect(t testing.TB, name string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(WithDatabase(name))
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	// Tests' own SQL reads the engine's tables by their plain names and
	// creates the tables they backfill in public; the engine qualifies its
	// own names and does not need this.
	cfg.ConnConfig.RuntimeParams["search_path"] = SearchPath
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("testdb: connecting: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		if err := admin(context.Background(), fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", pgx.Identifier{name}.Sanitize())); err != nil {
			t.Errorf("testdb: dropping %s: %v", name, err)
		}
	})
	return pool
}

// Exec runs statements on a test database, failing the test on error.
func Exec(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("testdb: %v\n%s", err, sql)
	}
}

func admin(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
