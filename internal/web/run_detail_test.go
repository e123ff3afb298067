package web

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
)

// GET /api/runs/{version}/{run} answers with the run's detail; bad paths
// get 400, runs that do not exist 404. The run page is served for any run
// with its own Content-Security-Policy.
func TestRunDetail_AnswersForARunAndRefusesBadPaths(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 100, "")
	h := f.handler(t, "", nil)

	r := call(t, h, http.MethodGet, "/api/runs/9/1", "")
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	var d batches.RunDetail
	require.NoError(t, json.Unmarshal([]byte(r.body), &d))
	require.Equal(t, int64(9), d.Status.Version)
	require.Equal(t, 1, d.LatestRun)
	require.Equal(t, batches.StatePending, d.Status.State)
	require.Contains(t, d.Definition.Statement, "UPDATE items")
	require.Len(t, d.Events, 1)
	require.Equal(t, "enqueue", d.Events[0].Action)
	require.Equal(t, "test-host", d.Events[0].Actor)
	require.NotEmpty(t, d.Partitions)
	require.NotNil(t, d.Throughput)
	requireNoSecrets(t, r, f.url, "")

	for path, code := range map[string]int{
		"/api/runs/9/2":   http.StatusNotFound,
		"/api/runs/8/1":   http.StatusNotFound,
		"/api/runs/9/0":   http.StatusBadRequest,
		"/api/runs/x/1":   http.StatusBadRequest,
		"/api/runs/9/-1":  http.StatusBadRequest,
		"/api/runs/9/1e3": http.StatusBadRequest,
		"/runs/9/1/extra": http.StatusNotFound,
	} {
		r := call(t, h, http.MethodGet, path, "")
		require.Equal(t, code, r.code, "%s: %s", path, r.body)
		require.Equal(t, 1, strings.Count(strings.TrimSpace(r.body), "\n")+1, "one line: %q", r.body)
	}

	page := call(t, h, http.MethodGet, "/runs/9/1", "")
	require.Equal(t, http.StatusOK, page.code)
	require.Contains(t, page.body, `id="timeline"`)
	require.Equal(t, runPage.policy, page.header.Get("Content-Security-Policy"))
	require.NotEqual(t, listPage.policy, runPage.policy, "each page allows only its own script")
}

// POST run enqueues a new run of a version whose latest run is finished,
// recorded as done by the page; it is refused while a run is in progress.
func TestActions_RunAgainFromThePage(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 100, "")
	h := f.handler(t, testToken, nil)

	r := call(t, h, http.MethodPost, "/api/runs/9/run", testToken)
	require.Equal(t, http.StatusConflict, r.code, r.body)
	require.Contains(t, r.body, "is pending")

	require.Equal(t, http.StatusOK, call(t, h, http.MethodPost, "/api/runs/9/cancel", testToken).code)
	r = call(t, h, http.MethodPost, "/api/runs/9/run", testToken)
	require.Equal(t, http.StatusOK, r.code, r.body)
	var res ActionResult
	require.NoError(t, json.Unmarshal([]byte(r.body), &res))
	require.Equal(t, 2, res.Run)
	require.Equal(t, "enqueued 9_touch run 2", res.Message)

	d := call(t, h, http.MethodGet, "/api/runs/9/2", "")
	require.Equal(t, http.StatusOK, d.code)
	var detail batches.RunDetail
	require.NoError(t, json.Unmarshal([]byte(d.body), &detail))
	require.Equal(t, "web page from 192.0.2.1", detail.Events[0].Actor, "httptest's remote address")
	d1 := call(t, h, http.MethodGet, "/api/runs/9/1", "")
	require.NoError(t, json.Unmarshal([]byte(d1.body), &detail))
	require.Equal(t, 2, detail.LatestRun)
	last := detail.Events[len(detail.Events)-1]
	require.Equal(t, "cancel", last.Action)
	require.Equal(t, "web page from 192.0.2.1", last.Actor)

	r = call(t, h, http.MethodPost, "/api/runs/7/run", testToken)
	require.Equal(t, http.StatusNotFound, r.code, r.body)
}
