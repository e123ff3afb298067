package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
)

const testToken = "test-token-0123456789abcdef"

func TestActions_403WithoutAConfiguredToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 100, "")
	h := f.handler(t, "", nil)
	for _, action := range []string{"pause", "resume", "cancel", "retry"} {
		for _, token := range []string{"", "anything"} {
			r := call(t, h, http.MethodPost, "/api/runs/9/"+action, token)
			require.Equal(t, http.StatusForbidden, r.code, "%s with token %q", action, token)
			require.Contains(t, r.body, "read-only")
			requireNoSecrets(t, r, f.url, token)
		}
	}
	require.Equal(t, batches.StatePending, f.status(t).State, "nothing changed")
}

func TestActions_401WithAMissingOrWrongToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 100, "")
	h := f.handler(t, testToken, nil)
	for _, token := range []string{"", "wrong", testToken + "x", testToken[:len(testToken)-1]} {
		r := call(t, h, http.MethodPost, "/api/runs/9/pause", token)
		require.Equal(t, http.StatusUnauthorized, r.code, "token %q", token)
		require.Contains(t, r.header.Get("WWW-Authenticate"), "Bearer")
		requireNoSecrets(t, r, f.url, testToken)
	}
	// Another scheme with the right token is refused too.
	req := func(auth string) int {
		rec := call(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Set("Authorization", auth)
			h.ServeHTTP(w, r)
		}), http.MethodPost, "/api/runs/9/pause", "")
		return rec.code
	}
	require.Equal(t, http.StatusUnauthorized, req("Basic "+testToken))
	require.Equal(t, http.StatusUnauthorized, req(testToken))
	require.Equal(t, batches.StatePending, f.status(t).State, "nothing changed")
}

func TestActions_WithTheTokenPauseResumeCancelChangeTheDatabase(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 100, "")
	h := f.handler(t, testToken, nil)

	r := call(t, h, http.MethodPost, "/api/runs/9/pause", testToken)
	require.Equal(t, http.StatusOK, r.code, r.body)
	var res ActionResult
	require.NoError(t, json.Unmarshal([]byte(r.body), &res))
	require.Equal(t, ActionResult{Version: 9, Name: "touch", Run: 1, State: batches.StatePaused, Message: "paused 9_touch run 1"}, res)
	require.Equal(t, batches.StatePaused, f.status(t).State)
	require.Equal(t, "paused", f.status(t).HeldBack)
	requireNoSecrets(t, r, f.url, testToken)

	// Pausing twice is refused with the engine's one-line message.
	r = call(t, h, http.MethodPost, "/api/runs/9/pause", testToken)
	require.Equal(t, http.StatusConflict, r.code)
	require.Equal(t, "text/plain; charset=utf-8", r.header.Get("Content-Type"))
	require.Contains(t, r.body, "9_touch run 1 is paused")
	require.Equal(t, 1, strings.Count(r.body, "\n"))

	r = call(t, h, http.MethodPost, "/api/runs/9/resume", testToken)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Contains(t, r.body, `"state":"running"`)
	require.Equal(t, batches.StateRunning, f.status(t).State)

	r = call(t, h, http.MethodPost, "/api/runs/9/retry", testToken)
	require.Equal(t, http.StatusConflict, r.code, "nothing failed: %s", r.body)
	require.Contains(t, r.body, "no failed batches")

	r = call(t, h, http.MethodPost, "/api/runs/9/cancel", testToken)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Equal(t, batches.StateCancelled, f.status(t).State)

	r = call(t, h, http.MethodPost, "/api/runs/9/retry", testToken)
	require.Equal(t, http.StatusConflict, r.code)
	require.Contains(t, r.body, "cancelled")
	requireNoSecrets(t, r, f.url, testToken)
}

func TestActions_409ForPausingACompletedRun(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 200, "-- batch: 100\n")
	f.startWorker(t, nil)
	f.waitState(t, batches.StateCompleted, 60*time.Second)
	h := f.handler(t, testToken, nil)
	for _, action := range []string{"pause", "resume", "cancel"} {
		r := call(t, h, http.MethodPost, "/api/runs/9/"+action, testToken)
		require.Equal(t, http.StatusConflict, r.code, "%s: %s", action, r.body)
		require.Contains(t, r.body, "9_touch run 1 is completed")
		require.Equal(t, 1, strings.Count(r.body, "\n"), "one line")
		requireNoSecrets(t, r, f.url, testToken)
	}
	require.Equal(t, batches.StateCompleted, f.status(t).State)
}

func TestActions_UnknownVersionActionOrMethod(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 10, "")
	h := f.handler(t, testToken, nil)

	r := call(t, h, http.MethodPost, "/api/runs/12345/pause", testToken)
	require.Equal(t, http.StatusNotFound, r.code)
	require.Contains(t, r.body, "no such run")

	r = call(t, h, http.MethodPost, "/api/runs/9/explode", testToken)
	require.Equal(t, http.StatusNotFound, r.code)
	require.Contains(t, r.body, "unknown action")

	r = call(t, h, http.MethodPost, "/api/runs/nine/pause", testToken)
	require.Equal(t, http.StatusBadRequest, r.code)

	// The token is checked before anything else is told.
	r = call(t, h, http.MethodPost, "/api/runs/12345/explode", "wrong")
	require.Equal(t, http.StatusUnauthorized, r.code)

	require.Equal(t, http.StatusMethodNotAllowed, call(t, h, http.MethodDelete, "/api/runs/9/pause", testToken).code)
	// GET reads a run: "pause" is no run number.
	r = call(t, h, http.MethodGet, "/api/runs/9/pause", testToken)
	require.Equal(t, http.StatusBadRequest, r.code)
	require.Contains(t, r.body, "want /api/runs/VERSION/RUN")
	require.Equal(t, batches.StatePending, f.status(t).State)
}

// The page throttles a run with the token: the change is in force for the
// workers and recorded with where it came from; bad bodies are refused with
// nothing changed.
func TestActions_ThrottleChangesTheRateAndRecordsIt(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 100, "")
	h := f.handler(t, testToken, nil)
	throttle := func(token, body string) response {
		req := httptest.NewRequest(http.MethodPost, "/api/runs/9/throttle", strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return response{code: rec.Code, header: rec.Header(), body: rec.Body.String()}
	}
	require.Equal(t, http.StatusUnauthorized, throttle("", `{"rate": 10}`).code)
	for _, bad := range []string{``, `{}`, `{"rate": -1}`, `{"batch": 0}`, `{"rate": "fast"}`, `{"speed": 5}`} {
		r := throttle(testToken, bad)
		require.Equal(t, http.StatusBadRequest, r.code, "%s: %s", bad, r.body)
	}
	require.Zero(t, f.status(t).ThrottledBy, "nothing changed")

	r := throttle(testToken, `{"rate": 2500, "batch": 50}`)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Contains(t, r.body, `"message":"throttled 9_touch run 1: rate 2500 rows/s, batch 50 (was`)
	st := f.status(t)
	require.Equal(t, 2500.0, st.Rate)
	require.Equal(t, 50, st.BatchSize)
	require.Equal(t, "web page from 192.0.2.1", *st.ThrottledBy, "httptest's remote address")

	r = throttle(testToken, `{"duty_cycle": 0.5, "max_replica_lag": 2000000000}`)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Contains(t, r.body, `duty cycle 50%, max replica lag 2s (was duty cycle 20%, max replica lag 5s)`)

	r = throttle(testToken, `{"rate": 0}`)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Contains(t, r.body, `rate unlimited (was rate 2500 rows/s)`)
}
