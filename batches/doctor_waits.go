package batches

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// What the batches wait on, for "enqueue doctor": a backfill that moves
// slowly, or that gets slower with more workers, is often waiting in the
// server (for the WAL, to extend the table, for other sessions' locks)
// rather than working. Doctor looks at the backfill sessions of the
// database several times and says what their statements waited on.

// waitLookInterval is how often doctor looks at the backfill sessions, on
// average.
const waitLookInterval = 10 * time.Millisecond

// waitWarnShare is the share of the batches' active time one wait event
// must take for doctor to warn about it, in %.
const waitWarnShare = 20

// sessionWaits counts, over the looks, the backfill sessions that ran a
// statement: under "CPU" those that waited for nothing, else under their
// wait event ("LWLock:WALBufMapping", "Lock:extend").
type sessionWaits struct {
	looks  int
	counts map[string]int
}

// lookAtWaits looks at the backfill sessions (application_name backfill)
// of q's database every waitLookInterval for d. It returns at once when
// no such session is connected.
func lookAtWaits(ctx context.Context, q Querier, d time.Duration) (sessionWaits, error) {
	w := sessionWaits{counts: map[string]int{}}
	deadline := time.Now().Add(d)
	for {
		// pg_stat_activity is read once per transaction unless told to
		// read it again, and doctor runs in one transaction.
		var one int
		if err := q.QueryRow(ctx, `SELECT 1 FROM pg_stat_clear_snapshot()`).Scan(&one); err != nil {
			return w, err
		}
		var connected int
		events := map[string]int{}
		rows, err := q.Query(ctx, `SELECT CASE WHEN state <> 'active' THEN NULL
	ELSE coalesce(wait_event_type || ':' || wait_event, 'CPU') END
FROM pg_stat_activity
WHERE application_name = 'backfill' AND datname = current_database() AND pid <> pg_backend_pid()`)
		if err != nil {
			return w, err
		}
		for rows.Next() {
			var event *string
			if err := rows.Scan(&event); err != nil {
				rows.Close()
				return w, err
			}
			connected++
			if event != nil {
				events[*event]++
			}
		}
		if err := rows.Err(); err != nil {
			return w, err
		}
		if connected == 0 && w.looks == 0 {
			return w, nil
		}
		w.looks++
		for e, n := range events {
			w.counts[e] += n
		}
		if time.Now().Add(waitLookInterval).After(deadline) {
			return w, nil
		}
		// A random gap, waitLookInterval on average, so that the looks do
		// not fall into step with batches of a steady length.
		select {
		case <-ctx.Done():
			return w, ctx.Err()
		case <-time.After(waitLookInterval/2 + rand.N(waitLookInterval)):
		}
	}
}

// active is how many times a backfill session was seen running a statement.
func (w sessionWaits) active() int {
	var n int
	for _, v := range w.counts {
		n += v
	}
	return n
}

// share is event's share of the batches' active time, in %.
func (w sessionWaits) share(event string) float64 {
	if a := w.active(); a > 0 {
		return 100 * float64(w.counts[event]) / float64(a)
	}
	return 0
}

// events are the wait events seen, the most frequent first (CPU aside).
func (w sessionWaits) events() []string {
	events := slices.DeleteFunc(slices.Collect(maps.Keys(w.counts)), func(e string) bool { return e == "CPU" })
	slices.SortFunc(events, func(a, b string) int { return cmp.Or(w.counts[b]-w.counts[a], strings.Compare(a, b)) })
	return events
}

// waitsFinding says what the batches did while doctor looked for d, and
// what to do when one wait took waitWarnShare % of their time or more.
// walBuffers is the server's wal_buffers, for the advice.
func waitsFinding(w sessionWaits, d time.Duration, walBuffers string) Finding {
	f := Finding{Check: "waits", Status: FindingOK}
	switch {
	case w.looks == 0:
		f.Detail = "no backfill session is connected to this database"
		return f
	case w.active() == 0:
		f.Detail = fmt.Sprintf("no batch ran a statement during the %s looked at", d)
		return f
	}
	events := w.events()
	parts := []string{fmt.Sprintf("on a CPU %.0f%%", w.share("CPU"))}
	for _, e := range events[:min(3, len(events))] {
		parts = append(parts, fmt.Sprintf("%s %.0f%%", e, w.share(e)))
	}
	f.Detail = fmt.Sprintf("%.1f backfill statements running on average over %s: %s",
		float64(w.active())/float64(w.looks), d, strings.Join(parts, ", "))
	if len(events) > 0 && w.share(events[0]) >= waitWarnShare {
		f.Status, f.Advice = FindingWarn, waitAdvice(events[0], walBuffers)
	}
	return f
}

// waitAdvice explains a wait event the batches spend much of their time
// on, and what to do about it.
func waitAdvice(event, walBuffers string) string {
	const fewer = "run fewer batches at once (the workers' --concurrency, the file's partitions)"
	kind, name, _ := strings.Cut(event, ":")
	switch {
	case event == "LWLock:WALBufMapping":
		return fmt.Sprintf("the batches wait for free WAL buffers (wal_buffers is %s): %s, or raise wal_buffers to 16MB or more (it takes a restart)", walBuffers, fewer)
	case event == "Lock:extend":
		return "the batches wait to extend the table, where their rows' new versions go when a row's own page is full: " + fewer +
			"; a fillfactor below 100 leaves room for updates on the rows' own pages"
	case strings.HasPrefix(name, "WAL") && (kind == "LWLock" || kind == "IO"):
		return "the batches wait for the WAL (" + event + "): every batch commits and writes its rows' WAL; fewer, larger batches commit less often, and " + fewer + " contends less"
	case kind == "Lock":
		return "the batches wait for locks other sessions hold (" + event + "): lock_timeout bounds each wait, and a batch that fails on one names the sessions that held it"
	case event == "IO:DataFileRead":
		return "the batches read the table from disk: their rows were not in shared_buffers"
	case kind == "LWLock":
		return "the batches contend in the server (" + event + "): " + fewer
	}
	return "the batches wait on " + event + " (PostgreSQL's wait events, in pg_stat_activity)"
}
