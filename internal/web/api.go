package web

import (
	"context"
	"net/http"

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
