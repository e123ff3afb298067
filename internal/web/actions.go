package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/jobs"
)

// ActionResult is the answer to a successful action.
type ActionResult struct {
	Version int64         `json:"version"`
	Name    string        `json:"name"`
	Run     int           `json:"run"`
	State   batches.State `json:"state"`
	// Partitions is how many partitions a retry resumed.
	Partitions int `json:"partitions,omitempty"`
	// Message says what was done, for people.
	Message string `json:"message"`
}

// act runs POST /api/runs/{version}/{action} on the version's latest run,
// as "enqueue pause|resume|cancel|retry VERSION" would; "run" enqueues a new
// run as "enqueue run --again VERSION".
func (s *server) act(w http.ResponseWriter, r *http.Request) {
	if !s.auth.authorize(w, r) {
		return
	}
	version, err := strconv.ParseInt(r.PathValue("version"), 10, 64)
	if err != nil || version <= 0 {
		textError(w, http.StatusBadRequest, fmt.Sprintf("version %q is not a positive integer", r.PathValue("version")))
		return
	}
	action := r.PathValue("action")
	ctx, cancel := context.WithTimeout(batches.WithActor(r.Context(), webActor(r)), queryTimeout)
	defer cancel()
	var (
		run   *batches.Run
		parts int
		done  string
	)
	switch action {
	case "pause":
		run, err = s.enqueuer.Pause(ctx, version)
		done = "paused"
	case "resume":
		run, err = s.enqueuer.Resume(ctx, version)
		done = "resumed"
	case "cancel":
		run, err = s.enqueuer.Cancel(ctx, version)
		done = "cancelled"
	case "retry":
		run, parts, err = s.enqueuer.Retry(ctx, version)
		done = "retrying"
	case "run":
		// A new run of a version whose latest run completed or was
		// cancelled, as "enqueue run --again VERSION".
		run, err = s.enqueuer.Run(ctx, version, true)
		done = "enqueued"
	case "throttle":
		var change batches.Throttle
		if err := decodeThrottle(r, &change); err != nil {
			textError(w, http.StatusBadRequest, err.Error())
			return
		}
		var res *batches.ThrottleChange
		if res, err = s.enqueuer.Throttle(ctx, version, change, webActor(r)); err == nil {
			run = res.Run
			done = fmt.Sprintf("%s (was %s)", res.After, res.Before)
		}
	default:
		textError(w, http.StatusNotFound, fmt.Sprintf("unknown action %q: want pause, resume, cancel, retry, run or throttle", action))
		return
	}
	if err != nil {
		code := actionErrorCode(err)
		if code == http.StatusInternalServerError {
			s.logger.Error("web: action failed", "action", action, "version", version, "err", err)
			textError(w, code, fmt.Sprintf("%s %d failed; see the worker's log", action, version))
			return
		}
		s.logger.Info("web: action refused", "action", action, "version", version, "reason", err, "remote", r.RemoteAddr)
		textError(w, code, err.Error())
		return
	}
	msg := done + " " + run.Label()
	switch action {
	case "retry":
		msg = fmt.Sprintf("retrying %s: %d partition(s) resume from their checkpoints", run.Label(), parts)
	case "throttle":
		msg = fmt.Sprintf("throttled %s: %s", run.Label(), done)
	}
	s.logger.Info("web: "+msg, "action", action, "version", version, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, ActionResult{
		Version: run.Version, Name: run.Name, Run: run.RunNumber, State: run.State, Partitions: parts, Message: msg,
	})
}

// decodeThrottle reads a throttle's JSON body: {"rate": 5000, "batch": 500},
// either field optional; the values are checked like the command line's.
func decodeThrottle(r *http.Request, change *batches.Throttle) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(change); err != nil {
		return fmt.Errorf(`throttle wants a JSON body such as {"rate": 5000, "batch": 500}: %v`, err)
	}
	return change.Validate()
}

// webActor names who acted through the page, for the run's history: the
// token does not say who holds it, so the address it was used from.
func webActor(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "web page from " + host
}

// actionErrorCode maps an Enqueuer error to a status: 404 for an unknown
// version, 409 for a run the action does not apply to, 422 for a definition
// that cannot be enqueued as it is, 500 otherwise.
func actionErrorCode(err error) int {
	var fileErr *batches.FileError
	switch {
	case errors.Is(err, batches.ErrRunNotFound), errors.Is(err, batches.ErrUnknownVersion):
		return http.StatusNotFound
	case errors.Is(err, batches.ErrWrongState), errors.Is(err, jobs.ErrNothingToRetry), errors.Is(err, jobs.ErrBusy):
		return http.StatusConflict
	case errors.As(err, &fileErr):
		// The definition cannot be enqueued now (a loss check refused it,
		// its table changed): the operator must fix the file.
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}
