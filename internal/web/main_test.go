package web

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
	"github.com/backfill/backfill/jobs"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// testVersion is the version of the backfill every fixture enqueues.
const testVersion int64 = 9

// fixture is a test database with a table "items" and one backfill over it
// (version 9, "touch"), enqueued but not worked until startWorker.
type fixture struct {
	url  string
	pool *pgxpool.Pool
	reg  *batches.Registry
	enq  *jobs.Enqueuer
}

// newFixture creates items with rows rows and enqueues the backfill with the
// extra header lines (such as "-- rate: 500").
func newFixture(t *testing.T, rows int, header string) *fixture {
	t.Helper()
	url, pool := testdb.New(t)
	testdb.Exec(t, pool, `CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO items (id) SELECT g FROM generate_series(1, `+strconv.Itoa(rows)+`) g;
ANALYZE items;`)
	dir := t.TempDir()
	body := "-- table: items\n-- key: id\n" + header +
		"UPDATE items SET n = n + 1 WHERE id BETWEEN @first AND @last;\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d_touch.sql", testVersion)), []byte(body), 0o644))
	reg, err := batches.NewRegistry(dir)
	require.NoError(t, err)
	enq, err := jobs.NewEnqueuer(pool, reg, "test-host")
	require.NoError(t, err)
	res, err := enq.Pending(context.Background())
	require.NoError(t, err)
	require.Len(t, res.Enqueued, 1)
	return &fixture{url: url, pool: pool, reg: reg, enq: enq}
}

// handler serves the fixture's database with the given token.
func (f *fixture) handler(t *testing.T, token string, m *Metrics) http.Handler {
	t.Helper()
	h, err := New(Config{Pool: f.pool, Enqueuer: f.enq, Metrics: m, Token: token, Logger: testLogger()})
	require.NoError(t, err)
	return h
}

// startWorker works the fixture's runs in-process until the test ends.
func (f *fixture) startWorker(t *testing.T, obs jobs.Observer) {
	t.Helper()
	w, err := jobs.NewWorker(jobs.WorkerConfig{Pool: f.pool, Registry: f.reg, Observer: obs, Logger: testLogger()})
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() { _ = w.Stop(10 * time.Second) })
}

// status is the latest run of the test version.
func (f *fixture) status(t *testing.T) batches.RunStatus {
	t.Helper()
	v := testVersion
	runs, err := batches.ListStatus(context.Background(), f.pool, &v)
	require.NoError(t, err)
	require.NotEmpty(t, runs)
	return runs[len(runs)-1]
}

// waitState polls until the latest run is in state want.
func (f *fixture) waitState(t *testing.T, want batches.State, timeout time.Duration) batches.RunStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := f.status(t)
		if st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("run is %s after %s, want %s (%d/%d rows)", st.State, timeout, want, st.RowsDone, st.RowsEstimated)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// response is what a request got back.
type response struct {
	code   int
	header http.Header
	body   string
}

// call sends a request to h; a non-empty token goes in Authorization.
func call(t *testing.T, h http.Handler, method, path, token string) response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return response{code: res.StatusCode, header: res.Header, body: string(body)}
}

// requireNoSecrets fails when a response shows the database URL (or its
// host:port/database part) or the token.
func requireNoSecrets(t *testing.T, r response, dbURL, token string) {
	t.Helper()
	all := r.body
	for k, vs := range r.header {
		all += "\n" + k + ": " + strings.Join(vs, ", ")
	}
	require.NotContains(t, all, dbURL)
	require.NotContains(t, all, strings.TrimPrefix(dbURL, "postgres://"))
	if token != "" {
		require.NotContains(t, all, token)
	}
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}
