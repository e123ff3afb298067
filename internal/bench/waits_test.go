package bench

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// benchSession is the application_name of the benchmark's own sessions
// (its pool, which polls for the run's end, and its wait sampler): their
// CPU is the benchmark's, not the turn's, and their waits are not sampled.
const benchSession = "throughput bench"

// waitInterval is how often the wait sampler looks, on average: often
// enough for a few hundred looks in a turn of seconds, seldom enough that
// its own queries take about 1% of one CPU.
const waitInterval = 20 * time.Millisecond

// waitCounts counts, over a turn's looks at pg_stat_activity, its sessions
// that were running a statement: "CPU" when they waited for nothing, else
// their wait event ("LWLock:WALBufMapping", "Lock:extend", "IO:WALSync").
type waitCounts map[string]int

// waitSampler looks at the turn's sessions every waitInterval, on a
// connection of its own, until finish.
type waitSampler struct {
	conn   *pgx.Conn
	counts waitCounts
	stop   chan struct{}
	done   chan struct{}
	err    error
}

// sampleWaits starts looking at the sessions of the database at url.
func sampleWaits(b *testing.B, url string) *waitSampler {
	b.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		b.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = benchSession
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	s := &waitSampler{conn: conn, counts: waitCounts{}, stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s
}

func (s *waitSampler) loop() {
	defer close(s.done)
	for {
		// A random gap, waitInterval on average, so that the looks do not
		// fall into step with batches of a steady length.
		select {
		case <-s.stop:
			return
		case <-time.After(waitInterval/2 + rand.N(waitInterval)):
		}
		rows, err := s.conn.Query(context.Background(), `
SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity
WHERE datname = current_database() AND state = 'active' AND backend_type = 'client backend'
	AND application_name <> $1`, benchSession)
		if err == nil {
			var event string
			_, err = pgx.ForEachRow(rows, []any{&event}, func() error { s.counts[event]++; return nil })
		}
		if err != nil {
			s.err = err
			return
		}
	}
}

// finish stops looking and returns what was seen.
func (s *waitSampler) finish(b *testing.B) waitCounts {
	b.Helper()
	close(s.stop)
	<-s.done
	_ = s.conn.Close(context.Background())
	if s.err != nil {
		b.Fatalf("sampling the sessions' waits: %v", s.err)
	}
	return s.counts
}

// add counts o's looks in w too.
func (w waitCounts) add(o waitCounts) {
	for k, v := range o {
		w[k] += v
	}
}

// waiting is the share, in %, of the sessions' active time they spent
// waiting for something other than a CPU.
func (w waitCounts) waiting() float64 {
	var all int
	for _, v := range w {
		all += v
	}
	if all == 0 {
		return 0
	}
	return 100 * float64(all-w["CPU"]) / float64(all)
}

// top names the n events the sessions waited on most, with their shares
// of the sessions' active time: "LWLock:WALBufMapping 31%, Lock:extend 12%".
func (w waitCounts) top(n int) string {
	var all int
	for _, v := range w {
		all += v
	}
	events := slices.DeleteFunc(slices.Collect(maps.Keys(w)), func(k string) bool { return k == "CPU" })
	slices.SortFunc(events, func(a, b string) int { return cmp.Or(w[b]-w[a], strings.Compare(a, b)) })
	var parts []string
	for _, e := range events[:min(n, len(events))] {
		if share := 100 * float64(w[e]) / float64(all); share >= 0.5 {
			parts = append(parts, fmt.Sprintf("%s %.0f%%", e, share))
		}
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

// waitsByCase says, for each case, what the sessions waited on most over
// all its runs: when batches in flight wait on each other in the server
// (the WAL's buffers, the table's extension lock), more of them at once
// cannot go faster even with CPUs to spare.
func waitsByCase(cases []throughputCase, results []throughputResult) string {
	var sb strings.Builder
	sb.WriteString("What the sessions waited on most, share of their active time over all runs (the rest on a CPU):\n")
	for i, c := range cases {
		r := results[i]
		fmt.Fprintf(&sb, "  %s: loop %s; engine %s\n", c.name, r.loopWaits.top(3), r.engineWaits.top(3))
	}
	return sb.String()
}
