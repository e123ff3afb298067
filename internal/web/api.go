package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/backfill/backfill/batches"
)

// listRuns answers with batches.ListStatus of every run, oldest version
// first; an empty array when there are none.
func (s *server) listRuns(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
	defer cancel()
	runs, err := batches.ListStatus(ctx, s.pool, nil)
	if err != nil {
		s.logger.Warn("web: reading the runs failed", "err", err)
		textError(w, http.StatusServiceUnavailable, "reading the runs failed; see the worker's log")
		return
	}
	if runs == nil {
		runs = []batches.RunStatus{}
	}
	writeJSON(w, http.StatusOK, runs)
}

// pageConfig tells the page what it may offer.
type pageConfig struct {
	// Actions is true when a token is configured, so pause, resume, cancel
	// and retry are possible for requests that carry it.
	Actions bool `json:"actions"`
}

func (s *server) config(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, pageConfig{Actions: s.auth.set})
}

// runDetail answers with batches.LoadRunDetail of one run: 404 for a run
// that does not exist.
func (s *server) runDetail(w http.ResponseWriter, r *http.Request) {
	version, err := strconv.ParseInt(r.PathValue("version"), 10, 64)
	number, err2 := strconv.Atoi(r.PathValue("run"))
	if err != nil || err2 != nil || version <= 0 || number <= 0 {
		textError(w, http.StatusBadRequest, fmt.Sprintf("want /api/runs/VERSION/RUN with positive integers, got %q/%q", r.PathValue("version"), r.PathValue("run")))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
	defer cancel()
	d, err := batches.LoadRunDetail(ctx, s.pool, version, number)
	if errors.Is(err, batches.ErrRunNotFound) {
		textError(w, http.StatusNotFound, fmt.Sprintf("version %d has no run %d", version, number))
		return
	}
	if err != nil {
		s.logger.Warn("web: reading a run failed", "version", version, "run", number, "err", err)
		textError(w, http.StatusServiceUnavailable, "reading the run failed; see the worker's log")
		return
	}
	writeJSON(w, http.StatusOK, d)
}
