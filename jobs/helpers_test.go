package jobs

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// testBundle is a database, a backfill directory and an enqueuer on them.
type testBundle struct {
	url  string
	pool *pgxpool.Pool
	dir  string
	reg  *batches.Registry
	enq  *Enqueuer
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	url, pool := testdb.New(t)
	return &testBundle{url: url, pool: pool, dir: t.TempDir()}
}

// writeFile writes a backfill file under the bundle's directory; name may
// start with "manual/".
func (b *testBundle) writeFile(t *testing.T, name, content string) {
	t.Helper()
	path := filepath.Join(b.dir, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

// load (re)reads the directory plus the given Go backfills.
func (b *testBundle) load(t *testing.T, goBackfills ...batches.GoBackfill) *Enqueuer {
	t.Helper()
	reg, err := batches.NewRegistry(b.dir)
	require.NoError(t, err)
	require.NoError(t, reg.Register(goBackfills...))
	enq, err := NewEnqueuer(b.pool, reg, "test-host")
	require.NoError(t, err)
	b.reg, b.enq = reg, enq
	return enq
}

// startWorker runs an in-process worker until the test ends.
func (b *testBundle) startWorker(t *testing.T, cfg WorkerConfig) *Worker {
	t.Helper()
	cfg.Pool = b.pool
	if cfg.Registry == nil {
		cfg.Registry = b.reg
	}
	if cfg.Logger == nil && testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	w, err := NewWorker(cfg)
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() { _ = w.Stop(10 * time.Second) })
	return w
}

// waitState polls the version's latest run until it reaches one of the
// final states, and fails unless it is want.
func (b *testBundle) waitState(t *testing.T, version int64, want batches.State, timeout time.Duration) batches.RunStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		runs, err := batches.ListStatus(context.Background(), b.pool, &version)
		require.NoError(t, err)
		if len(runs) > 0 {
			last := runs[len(runs)-1]
			if last.State == want {
				return last
			}
			if (last.State == batches.StateCompleted || last.State == batches.StateFailed || last.State == batches.StateCancelled) && last.State != want {
				t.Fatalf("run of %d ended %s, want %s (last error: %v)", version, last.State, want, deref(last.LastError))
			}
			if time.Now().After(deadline) {
				t.Fatalf("run of %d still %s after %s, want %s (%d/%d rows, last error: %v)", version, last.State, timeout, want, last.RowsDone, last.RowsEstimated, deref(last.LastError))
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("version %d has no run after %s", version, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<none>"
	}
	return *s
}

// queryInt runs a query returning one integer.
func queryInt(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// newRedis connects to the test Redis server.
func newRedis(t *testing.T) *redis.Client {
	t.Helper()
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opts, err := redis.ParseURL(url)
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	require.NoError(t, rdb.Ping(context.Background()).Err())
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func itoa(n int) string { return strconv.Itoa(n) }
