// Package web is the worker's HTTP endpoint: a live page of every run with
// pause, resume, cancel, retry, throttle and run again, a page per run with
// its history, their JSON API, Prometheus metrics and a health check.
//
// Routes:
//
//	GET  /                               the page of all runs (self-contained, polls /api/runs every second)
//	GET  /runs/{version}/{run}           the page of one run: definition, timeline, chart, partitions, failures
//	GET  /healthz                        200 when the database answers a ping, 503 otherwise
//	GET  /metrics                        Prometheus text format (see Metrics)
//	GET  /api/runs                       batches.ListStatus of every run, as JSON
//	GET  /api/runs/{version}/{run}       batches.LoadRunDetail of one run, as JSON
//	GET  /api/config                     {"actions": bool}: whether actions are enabled
//	POST /api/runs/{version}/{action}    pause, resume, cancel, retry, throttle or run (again) the
//	                                     version's latest run; needs Authorization: Bearer TOKEN
//
// Without a token the server is read-only: every POST gets 403.
package web

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/backfill/backfill/jobs"
)

// PingTimeoutDefault bounds /healthz's ping of the database.
const PingTimeoutDefault = 2 * time.Second

// queryTimeout bounds the database work of one API request.
const queryTimeout = 10 * time.Second

// Config configures the handler.
type Config struct {
	// Pool is the worker's pool: pinged by /healthz, read by /api/runs.
	Pool *pgxpool.Pool
	// Enqueuer carries out the actions; required when Token is set.
	Enqueuer *jobs.Enqueuer
	// Metrics is served on /metrics; a fresh one (Go and process metrics
	// only) when nil.
	Metrics *Metrics
	// Token enables the actions for requests that carry it as a bearer
	// token. Empty: read-only.
	Token  string
	Logger *slog.Logger
	// PingTimeout bounds /healthz's ping; PingTimeoutDefault when zero.
	PingTimeout time.Duration
}

type server struct {
	pool        *pgxpool.Pool
	enqueuer    *jobs.Enqueuer
	auth        tokenCheck
	logger      *slog.Logger
	pingTimeout time.Duration
}

// New returns the handler of every route.
func New(cfg Config) (http.Handler, error) {
	if cfg.Pool == nil {
		return nil, errors.New("web: Config.Pool is required")
	}
	if cfg.Token != "" && cfg.Enqueuer == nil {
		return nil, errors.New("web: Config.Enqueuer is required when a token enables the actions")
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	// The runs' gauges, read from the version table when scraped; once per
	// registry, however many handlers share it.
	var already prometheus.AlreadyRegisteredError
	if err := cfg.Metrics.Registry().Register(runGauges{pool: cfg.Pool}); err != nil && !errors.As(err, &already) {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &server{
		pool: cfg.Pool, enqueuer: cfg.Enqueuer, auth: newTokenCheck(cfg.Token), logger: cfg.Logger,
		pingTimeout: cmp.Or(cfg.PingTimeout, PingTimeoutDefault),
	}
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", listPage)
	mux.Handle("GET /runs/{version}/{run}", runPage)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", cfg.Metrics.Handler())
	mux.HandleFunc("GET /api/runs", s.listRuns)
	mux.HandleFunc("GET /api/runs/{version}/{run}", s.runDetail)
	mux.HandleFunc("GET /api/config", s.config)
	mux.HandleFunc("POST /api/runs/{version}/{action}", s.act)
	return secureHeaders(mux), nil
}

// secureHeaders sets the headers every response carries.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// healthz answers 200 when the database answers a ping in time.
func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.pingTimeout)
	defer cancel()
	w.Header().Set("Cache-Control", "no-store")
	if err := s.pool.Ping(ctx); err != nil {
		// The error may name the server; it goes to the log, not the response.
		s.logger.Debug("health check: database unreachable", "err", err)
		textError(w, http.StatusServiceUnavailable, "database unreachable")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

// textError answers with a one-line plain-text message.
func textError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintln(w, oneLine(msg))
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
