package web

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

func TestHealthz_200WithALivePool_503WithAClosedOne(t *testing.T) {
	t.Parallel()
	url, pool := testdb.New(t)
	h, err := New(Config{Pool: pool})
	require.NoError(t, err)
	r := call(t, h, http.MethodGet, "/healthz", "")
	require.Equal(t, http.StatusOK, r.code)
	require.Equal(t, "ok\n", r.body)
	require.Equal(t, "no-store", r.header.Get("Cache-Control"))

	closed, err := pgxpool.New(context.Background(), url)
	require.NoError(t, err)
	closed.Close()
	h, err = New(Config{Pool: closed})
	require.NoError(t, err)
	r = call(t, h, http.MethodGet, "/healthz", "")
	require.Equal(t, http.StatusServiceUnavailable, r.code)
	require.Equal(t, "database unreachable\n", r.body)
	requireNoSecrets(t, r, url, "")
}

func TestAPIRuns_ListsEveryRunAsJSON(t *testing.T) {
	t.Parallel()
	_, empty := testdb.New(t)
	h, err := New(Config{Pool: empty})
	require.NoError(t, err)
	r := call(t, h, http.MethodGet, "/api/runs", "")
	require.Equal(t, http.StatusOK, r.code)
	require.Equal(t, "[]\n", r.body, "no runs is an empty array, not null")

	f := newFixture(t, 1000, "-- batch: 100\n")
	r = call(t, f.handler(t, "", nil), http.MethodGet, "/api/runs", "")
	require.Equal(t, http.StatusOK, r.code)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	var runs []batches.RunStatus
	require.NoError(t, json.Unmarshal([]byte(r.body), &runs))
	require.Len(t, runs, 1)
	require.Equal(t, testVersion, runs[0].Version)
	require.Equal(t, "touch", runs[0].Name)
	require.Equal(t, batches.StatePending, runs[0].State)
	require.Equal(t, batches.ModeAuto, runs[0].Mode)
	require.Equal(t, batches.DirectionUp, runs[0].Direction)
	require.InDelta(t, 1000, runs[0].RowsEstimated, 50)
	// The page relies on these names.
	for _, field := range []string{`"rows_done"`, `"rows_estimated"`, `"rows_per_second"`, `"eta_seconds"`,
		`"batches_done"`, `"batches_failed"`, `"last_error"`, `"run"`, `"state"`, `"mode"`, `"direction"`} {
		require.Contains(t, r.body, field)
	}
	requireNoSecrets(t, r, f.url, "")
}

func TestAPIConfig_SaysWhetherActionsAreEnabled(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 10, "")
	r := call(t, f.handler(t, "", nil), http.MethodGet, "/api/config", "")
	require.Equal(t, http.StatusOK, r.code)
	require.JSONEq(t, `{"actions": false}`, r.body)

	r = call(t, f.handler(t, "a-long-test-token-123", nil), http.MethodGet, "/api/config", "")
	require.Equal(t, http.StatusOK, r.code)
	require.JSONEq(t, `{"actions": true}`, r.body)
	requireNoSecrets(t, r, f.url, "a-long-test-token-123")
}

func TestPage_IsSelfContainedWithAStrictPolicy(t *testing.T) {
	t.Parallel()
	_, pool := testdb.New(t)
	h, err := New(Config{Pool: pool})
	require.NoError(t, err)
	r := call(t, h, http.MethodGet, "/", "")
	require.Equal(t, http.StatusOK, r.code)
	require.Equal(t, "text/html; charset=utf-8", r.header.Get("Content-Type"))
	require.Equal(t, "nosniff", r.header.Get("X-Content-Type-Options"))
	csp := r.header.Get("Content-Security-Policy")
	require.Contains(t, csp, "default-src 'none'")
	require.Contains(t, csp, "connect-src 'self'")
	// The shared formatting and the page's own script, each by its hash.
	require.Regexp(t, `script-src 'sha256-[A-Za-z0-9+/]+=*' 'sha256-[A-Za-z0-9+/]+=*'(;|$)`, csp)
	require.Regexp(t, `style-src 'sha256-[A-Za-z0-9+/]+=*'(;|$)`, csp)
	// Nothing is loaded from elsewhere: the machines have no internet.
	for _, ref := range []string{"http://", "https://", "src=", "<link rel=\"stylesheet\"", "@import", "{{"} {
		require.NotContains(t, r.body, ref)
	}
	require.Contains(t, r.body, `"api/runs"`)
	require.Contains(t, r.body, `role: "progressbar"`)
	require.Contains(t, r.body, `window.backfillFormat = (function`, "format.js is inlined")

	// The run page likewise (its one http:// is SVG's namespace, not a fetch).
	r = call(t, h, http.MethodGet, "/runs/1/1", "")
	require.Equal(t, http.StatusOK, r.code)
	require.Regexp(t, `script-src 'sha256-[A-Za-z0-9+/]+=*' 'sha256-[A-Za-z0-9+/]+=*'(;|$)`, r.header.Get("Content-Security-Policy"))
	for _, ref := range []string{"https://", "src=", "<link rel=\"stylesheet\"", "@import", "{{"} {
		require.NotContains(t, r.body, ref)
	}
	require.Contains(t, r.body, `window.backfillFormat = (function`)

	require.Equal(t, http.StatusNotFound, call(t, h, http.MethodGet, "/nope", "").code)
	require.Equal(t, http.StatusMethodNotAllowed, call(t, h, http.MethodPost, "/", "").code)
	require.Equal(t, http.StatusMethodNotAllowed, call(t, h, http.MethodPost, "/api/runs", "").code)
}

func TestNew_RejectsATokenWithoutEnqueuer(t *testing.T) {
	t.Parallel()
	_, pool := testdb.New(t)
	_, err := New(Config{Pool: pool, Token: "x"})
	require.Error(t, err)
	_, err = New(Config{})
	require.Error(t, err)
	require.True(t, strings.HasPrefix(err.Error(), "web: "))
}
