package batches

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The checks of "enqueue doctor": what an operator looks at when a backfill
// does not move, each with what to do about it.

// Severities of a finding.
const (
	FindingOK   = "ok"
	FindingWarn = "warn" // worth a look; nothing is stuck because of it
	FindingFail = "fail" // something is wrong: doctor exits non-zero
)

// Finding is one check's result.
type Finding struct {
	Check  string `json:"check"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	// Advice says what to do; empty when all is well.
	Advice string `json:"advice,omitempty"`
}

// DoctorParams say what the checks compare with.
type DoctorParams struct {
	// URLPort is the port the connection string names (0: unknown), to
	// tell a pooler in between from the server itself.
	URLPort int
	// DeadAfter is when a silent worker counts as dead.
	DeadAfter time.Duration
	// IdleLimit is how long a backfill session may sit idle in a
	// transaction before it counts as leaked.
	IdleLimit time.Duration
	// JobKind is the River job kind of the batches.
	JobKind string
	// LookAtWaits is how long doctor looks at what the backfill sessions
	// wait on (0: it does not look).
	LookAtWaits time.Duration
}

// Doctor runs the checks on q. A check that cannot run is a failed finding,
// not an error: the others still run. Only a connection that does not work
// at all (the first check) stops it.
func Doctor(ctx context.Context, q Querier, p DoctorParams) ([]Finding, error) {
	var out []Finding
	add := func(check, status, detail, advice string) {
		out = append(out, Finding{Check: check, Status: status, Detail: detail, Advice: advice})
	}
	failed := func(check string, err error) { add(check, FindingFail, "could not check: "+err.Error(), "") }

	// Connectivity, and a pooler between the client and the server.
	var (
		version    string
		serverPort int
	)
	began := time.Now()
	if err := q.QueryRow(ctx, `SELECT current_setting('server_version'), coalesce(inet_server_port(), current_setting('port')::int)`).Scan(&version, &serverPort); err != nil {
		return nil, fmt.Errorf("batches: the database does not answer: %w", err)
	}
	add("connection", FindingOK, fmt.Sprintf("PostgreSQL %s, a round trip in %s", version, time.Since(began).Round(100*time.Microsecond)), "")
	if p.URLPort != 0 && p.URLPort != serverPort {
		add("pooler", FindingWarn,
			fmt.Sprintf("connected on port %d to a server on port %d: a connection pooler or proxy is in between", p.URLPort, serverPort),
			"if it pools by transaction (PgBouncer pool_mode=transaction), run the workers with --pool-mode transaction (DATABASE_POOL_MODE=transaction); see the README's Behind PgBouncer")
	}

	// The schema.
	if err := CheckSchema(ctx, q); err != nil {
		var advice string
		switch msg := err.Error(); {
		case strings.Contains(msg, "enqueue migrate"):
			advice = "run enqueue migrate"
		case strings.Contains(msg, "upgrade"):
			advice = "upgrade this binary to the release that migrated the database"
		}
		add("schema", FindingFail, err.Error(), advice)
		return out, nil // the other checks read tables that may not be there
	}
	add("schema", FindingOK, fmt.Sprintf("version %d, as this binary expects, in schema %s", SchemaVersion(), SchemaName()), "")

	// Live workers, against the runs that need them.
	var live, active int64
	if err := q.QueryRow(ctx, inSchema(`SELECT
	(SELECT count(*) FROM backfill_workers WHERE heartbeat_at > now() - $1::interval),
	(SELECT count(*) FROM backfill_runs WHERE state IN ('pending', 'running'))`), p.DeadAfter).Scan(&live, &active); err != nil {
		failed("workers", err)
	} else {
		switch {
		case active > 0 && live == 0:
			add("workers", FindingFail, fmt.Sprintf("no worker is alive, and %d runs wait for one", active), "start a worker process (worker); it takes the runs over from their checkpoints")
		default:
			add("workers", FindingOK, fmt.Sprintf("%d alive, %d runs pending or running", live, active), "")
		}
	}

	// River's queue: jobs of ours that failed for good or wait long.
	var discarded, waiting int64
	if err := q.QueryRow(ctx, inSchema(`SELECT
	count(*) FILTER (WHERE state = 'discarded' AND finalized_at > now() - interval '1 day'),
	count(*) FILTER (WHERE state = 'available' AND scheduled_at < now() - interval '1 minute')
FROM river_job WHERE kind = $1`), p.JobKind).Scan(&discarded, &waiting); err != nil {
		failed("queue", err)
	} else {
		switch {
		case waiting > 0 && live > 0:
			add("queue", FindingWarn, fmt.Sprintf("%d jobs ready for more than a minute that no worker took", waiting),
				"the workers are busy with other jobs: start more workers, or raise --concurrency")
		case discarded > 0:
			add("queue", FindingWarn, fmt.Sprintf("%d jobs discarded in the last day", discarded),
				"enqueue status shows their runs' errors; enqueue retry VERSION resumes failed batches")
		default:
			add("queue", FindingOK, "no job stuck", "")
		}
	}

	// Partitions whose job died with its worker, or ended.
	if lost, err := LostPartitions(ctx, q, p.DeadAfter); err != nil {
		failed("partitions", err)
	} else if len(lost) > 0 {
		status, advice := FindingWarn, "a live worker's heartbeat hands them new jobs within a few seconds"
		if live == 0 {
			status, advice = FindingFail, "start a worker: its heartbeat hands them new jobs"
		}
		add("partitions", status, fmt.Sprintf("%d partitions of active runs are owned by a dead worker or an ended job (run %d partition %d first)",
			len(lost), lost[0].RunID, lost[0].Partition), advice)
	} else {
		add("partitions", FindingOK, "every unfinished partition has a live job", "")
	}

	// Leaked locks: the migration lease, and backfill sessions idle in a
	// transaction (which hold their locks and pin vacuum).
	var (
		holder  *string
		expires *time.Time
	)
	err := q.QueryRow(ctx, inSchema(`SELECT holder, expires_at FROM backfill_migrate_lock WHERE id = 1`)).Scan(&holder, &expires)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		failed("locks", err)
	case expires != nil && expires.After(time.Now()):
		add("locks", FindingWarn, fmt.Sprintf("enqueue migrate lock held by %s until %s", deref(holder), expires.Format(time.RFC3339)),
			"a migrate is running, or died: its lease runs out by itself at that time")
	}
	rows, err := q.Query(ctx, `SELECT pid, extract(epoch FROM now() - state_change)::float8, left(query, 80)
FROM pg_stat_activity
WHERE state IN ('idle in transaction', 'idle in transaction (aborted)') AND application_name = 'backfill'
	AND state_change < now() - $1::interval AND pid <> pg_backend_pid()
ORDER BY state_change`, p.IdleLimit)
	type leak struct {
		pid   int32
		idle  float64
		query string
	}
	var leaks []leak
	if err == nil {
		leaks, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (leak, error) {
			var l leak
			return l, r.Scan(&l.pid, &l.idle, &l.query)
		})
	}
	switch {
	case err != nil:
		failed("locks", err)
	case len(leaks) > 0:
		described := make([]string, len(leaks))
		for i, l := range leaks {
			described[i] = fmt.Sprintf("pid %d idle in a transaction for %.0fs after %q", l.pid, l.idle, l.query)
		}
		add("locks", FindingFail, strings.Join(described, "; "),
			fmt.Sprintf("a backfill session holds its locks while doing nothing: end it with SELECT pg_terminate_backend(%d)", leaks[0].pid))
	default:
		add("locks", FindingOK, "no backfill session idle in a transaction", "")
	}

	// What the batches wait on.
	if p.LookAtWaits > 0 {
		var walBuffers string
		waits, err := lookAtWaits(ctx, q, p.LookAtWaits)
		if err == nil {
			err = q.QueryRow(ctx, `SELECT current_setting('wal_buffers')`).Scan(&walBuffers)
		}
		if err != nil {
			failed("waits", err)
		} else {
			out = append(out, waitsFinding(waits, p.LookAtWaits, walBuffers))
		}
	}
	return out, nil
}
