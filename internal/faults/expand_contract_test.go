package faults_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// writeTarget is where the application writes in one phase: a table, its
// column, the column's type, and the value it writes with what the column
// of the final table must then hold (nil: NULL).
type writeTarget struct {
	table, column, typ string
	value              func(rng *rand.Rand, g, n int) (string, *string)
}

// liveWriter is an application writing the whole time: each of its
// goroutines owns the ids with its remainder, one row per transaction, and
// remembers what the final table must hold for each row it wrote, so that
// at the end every write can be checked.
type liveWriter struct {
	pool   *pgxpool.Pool
	target atomic.Pointer[writeTarget]
	writes atomic.Int64
	failed atomic.Int64
	mu     sync.Mutex
	errs   []string
	// model[g][id] is what goroutine g's last write to id leaves in the
	// final table; deleted rows are in gone.
	model []map[int64]*string
	gone  []map[int64]bool
	stop  chan struct{}
	done  sync.WaitGroup
	// started and stopped bound the time it wrote.
	started, stopped time.Time
}

const liveWriters = 4

func startLiveWriter(pool *pgxpool.Pool, rows int64, target *writeTarget) *liveWriter {
	w := &liveWriter{pool: pool, stop: make(chan struct{}), started: time.Now()}
	w.target.Store(target)
	for g := range liveWriters {
		w.model = append(w.model, map[int64]*string{})
		w.gone = append(w.gone, map[int64]bool{})
		w.done.Add(1)
		go w.run(g, rows)
	}
	return w
}

// run inserts new ids past rows, and updates and deletes random ones of its
// own, until stopped.
func (w *liveWriter) run(g int, rows int64) {
	defer w.done.Done()
	next := rows + int64(g) + 1 // this goroutine's next new id
	rng := rand.New(rand.NewPCG(uint64(g), 7))
	for n := 0; ; n++ {
		select {
		case <-w.stop:
			return
		default:
		}
		tg := w.target.Load()
		value, expect := tg.value(rng, g, n)
		var (
			sql string
			id  int64
		)
		deleting := false
		switch r := rng.IntN(10); {
		case r < 2:
			id, next = next, next+liveWriters
			sql = fmt.Sprintf(`INSERT INTO %s (id, %s) VALUES ($1, $2::text::%s)`, tg.table, tg.column, tg.typ)
		case r < 3:
			id, deleting = own(rng.Int64N(rows)+1, g), true
			sql = fmt.Sprintf(`DELETE FROM %s WHERE id = $1 AND $2::text IS NOT NULL`, tg.table)
		default:
			id = own(rng.Int64N(rows)+1, g)
			sql = fmt.Sprintf(`UPDATE %s SET %s = $2::text::%s WHERE id = $1`, tg.table, tg.column, tg.typ)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		tag, err := w.pool.Exec(ctx, sql, id, value)
		cancel()
		w.writes.Add(1)
		switch {
		case err != nil:
			w.failed.Add(1)
			w.mu.Lock()
			w.errs = append(w.errs, err.Error())
			w.mu.Unlock()
		case deleting:
			w.gone[g][id] = true
			delete(w.model[g], id)
		case tag.RowsAffected() == 1:
			w.model[g][id] = expect
		}
	}
}

// own maps id to the nearest id owned by goroutine g.
func own(id int64, g int) int64 { return id - id%liveWriters + int64(g) }

func (w *liveWriter) halt() {
	select {
	case <-w.stop:
		return
	default:
	}
	close(w.stop)
	w.done.Wait()
	w.stopped = time.Now()
}

// elapsed is how long it wrote, in seconds.
func (w *liveWriter) elapsed() float64 { return w.stopped.Sub(w.started).Seconds() }

// expandCase is one change of the kit, run under live writes.
type expandCase struct {
	name string
	// setup creates the table of rows rows (placeholder %d).
	setup string
	// flags are "enqueue new"'s for the kit.
	flags []string
	// onLoss enables the backfill file's "(off) on_loss: null".
	onLoss bool
	// before and after are where the application writes before and after
	// it switches; final is the table and column that hold the data at the
	// end, and untouched the SQL count of rows nobody wrote that hold
	// something else than at the start (placeholder %d: rows).
	before, after *writeTarget
	final, column string
	untouched     string
}

func text(s string) *string { return &s }

var expandCases = []expandCase{{
	name:  "rename a column",
	setup: `CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL); INSERT INTO accounts (id, email) SELECT g, 'user' || g || '@example.com' FROM generate_series(1, %d) g`,
	flags: []string{"--copy-column", "accounts.email:email_address"},
	before: &writeTarget{table: "accounts", column: "email", typ: "text", value: func(_ *rand.Rand, g, n int) (string, *string) {
		v := fmt.Sprintf("w%d-%d@old", g, n)
		return v, text(v)
	}},
	after: &writeTarget{table: "accounts", column: "email_address", typ: "text", value: func(_ *rand.Rand, g, n int) (string, *string) {
		v := fmt.Sprintf("w%d-%d@new", g, n)
		return v, text(v)
	}},
	final: "accounts", column: "email_address",
	untouched: `SELECT count(*) FROM accounts WHERE id <= %d AND email_address NOT LIKE 'w%%' AND email_address IS DISTINCT FROM 'user' || id || '@example.com'`,
}, {
	// numeric to bigint: every 50th amount the application writes, and every
	// 97th row from before, has a fraction and does not survive.
	name:   "change a column's type with loss",
	setup:  `CREATE TABLE ledger (id bigint PRIMARY KEY, amount numeric); INSERT INTO ledger (id, amount) SELECT g, CASE WHEN g %% 97 = 0 THEN g + 0.5 ELSE g * 100 END FROM generate_series(1, %d) g`,
	flags:  []string{"--copy-column", "ledger.amount:amount_units", "--type", "bigint"},
	onLoss: true,
	before: &writeTarget{table: "ledger", column: "amount", typ: "numeric", value: func(rng *rand.Rand, g, n int) (string, *string) {
		if n%50 == 0 {
			return fmt.Sprintf("%d.25", n), nil
		}
		v := strconv.Itoa(rng.IntN(1_000_000))
		return v, text(v)
	}},
	after: &writeTarget{table: "ledger", column: "amount_units", typ: "bigint", value: func(rng *rand.Rand, g, n int) (string, *string) {
		v := strconv.Itoa(rng.IntN(1_000_000))
		return v, text(v)
	}},
	final: "ledger", column: "amount_units",
	untouched: `SELECT count(*) FROM ledger WHERE id <= %d AND amount_units IS DISTINCT FROM CASE WHEN id %% 97 = 0 THEN NULL ELSE id * 100 END
		AND NOT EXISTS (SELECT 1 FROM unnest($1::bigint[]) w(id) WHERE w.id = ledger.id)`,
}, {
	name:  "rename a table",
	setup: `CREATE TABLE members (id bigint PRIMARY KEY, email text NOT NULL, joined date NOT NULL DEFAULT '2026-01-01'); INSERT INTO members (id, email) SELECT g, 'user' || g || '@example.com' FROM generate_series(1, %d) g`,
	flags: []string{"--copy-table", "members:people"},
	before: &writeTarget{table: "members", column: "email", typ: "text", value: func(_ *rand.Rand, g, n int) (string, *string) {
		v := fmt.Sprintf("w%d-%d@old", g, n)
		return v, text(v)
	}},
	after: &writeTarget{table: "people", column: "email", typ: "text", value: func(_ *rand.Rand, g, n int) (string, *string) {
		v := fmt.Sprintf("w%d-%d@new", g, n)
		return v, text(v)
	}},
	final: "people", column: "email",
	untouched: `SELECT (SELECT count(*) FROM people WHERE id <= %d AND email NOT LIKE 'w%%' AND email IS DISTINCT FROM 'user' || id || '@example.com')
		+ (SELECT count(*) FROM generate_series(1, %[1]d) g WHERE NOT EXISTS (SELECT 1 FROM people WHERE id = g) AND NOT EXISTS (SELECT 1 FROM unnest($1::bigint[]) w(id) WHERE w.id = g))`,
}}

// The seed's changes under live writes, end to end: expand while an
// application writes, backfill with a worker killed by SIGKILL, verify,
// switch the application to the copy, verify again, contract while it still
// writes. At the end no write failed, every row holds what was last written
// to it (NULL where a value did not survive a type change, as on_loss: null
// decided), and rows nobody wrote hold what they held at the start.
func TestExpandContract_UnderLiveWrites(t *testing.T) {
	t.Parallel()
	rows := int64(1_000_000)
	if v, err := strconv.ParseInt(os.Getenv("EXPAND_ROWS"), 10, 64); err == nil && v > 0 {
		rows = v
	}
	for _, tc := range expandCases {
		t.Run(tc.name, func(t *testing.T) { runExpandCase(t, tc, rows) })
	}
}

func runExpandCase(t *testing.T, tc expandCase, rows int64) {
	began := time.Now()
	step := func(what string) { t.Logf("%6s  %s", time.Since(began).Round(100*time.Millisecond), what) }
	s := newScenario(t)
	s.exec(fmt.Sprintf(tc.setup, rows))
	s.exec(`VACUUM ANALYZE ` + tc.before.table)
	writer := startLiveWriter(s.pool, rows, tc.before)
	defer writer.halt()
	time.Sleep(500 * time.Millisecond) // the application is writing

	// Deploy 1: the kit, then its expand SQL as the application's migration.
	sqlDir := t.TempDir()
	res := s.enqueue(30*time.Second, append([]string{"new", "change", "--sql-dir", sqlDir}, tc.flags...)...)
	require.Zero(t, res.Code, res.Output())
	paths := strings.Fields(res.Stdout)
	require.Len(t, paths, 3, res.Stdout)
	expand, backfill, contract := paths[0], paths[1], paths[2]
	version := strings.SplitN(filepath.Base(backfill), "_", 2)[0]
	s.exec(`SET lock_timeout = '5s'; ` + readFile(t, expand))
	step("expanded")
	if tc.onLoss {
		res = s.enqueue(60*time.Second, "pending")
		require.NotZero(t, res.Code, "the loss check refuses the run")
		require.Contains(t, res.Output(), "rows would lose data in the conversion")
		decided := strings.Replace(readFile(t, backfill), "-- (off) on_loss: null", "-- on_loss: null", 1)
		require.NoError(t, os.WriteFile(backfill, []byte(decided), 0o644))
	}
	res = s.enqueue(60*time.Second, "pending")
	require.Zero(t, res.Code, res.Output())
	// Full speed for the test: the gentle default would take minutes.
	res = s.enqueue(30*time.Second, "throttle", version, "--duty-cycle", "off")
	require.Zero(t, res.Code, res.Output())
	step("enqueued")

	fastHeartbeat := []string{"--heartbeat", "200ms", "--dead-after", "1s"}
	victim := s.worker("victim", nil, fastHeartbeat...)
	v, _ := strconv.ParseInt(version, 10, 64)
	at := s.waitRows(v, rows/5)
	require.NoError(t, victim.Signal(syscall.SIGKILL))
	<-victim.Exited()
	w2 := s.worker("survivor", nil, fastHeartbeat...)
	took := s.waitCompleted(v)
	t.Logf("backfill completed %s after the kill at %d rows", took.Round(time.Millisecond), at.RowsDone)
	res = s.enqueue(5*time.Minute, "verify", version, "--progress-every", "10s")
	require.Zero(t, res.Code, "verify after the backfill, under writes: %s", res.Output())
	step(strings.TrimSpace(res.Stdout))

	// Deploy 2: the application reads and writes the copy only.
	writer.target.Store(tc.after)
	time.Sleep(time.Second)
	res = s.enqueue(5*time.Minute, "verify", version, "--progress-every", "10s")
	require.Zero(t, res.Code, "verify after the switch, under writes: %s", res.Output())

	// Deploy 3: the contract, in one transaction as migration tools run it,
	// while the application keeps writing.
	step("switched and verified again")
	s.exec(readFile(t, contract))
	step("contracted")
	time.Sleep(500 * time.Millisecond)
	writer.halt()
	stopWorkers(t, w2)

	writes, failed := writer.writes.Load(), writer.failed.Load()
	require.Zero(t, failed, "writes failed because of the change: %v", first(writer.errs, 5))

	// Every row written holds its last write; deleted rows are gone.
	var ids, deleted []int64
	var wants []*string
	for g := range liveWriters {
		for id := range writer.gone[g] {
			deleted = append(deleted, id)
		}
		for id, want := range writer.model[g] {
			ids, wants = append(ids, id), append(wants, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wrong, undeleted int64
	var examples []string
	require.NoError(t, s.pool.QueryRow(ctx, fmt.Sprintf(`
SELECT count(*), coalesce((array_agg(format('row %%s: want %%s, got %%s', w.id, coalesce(w.want, 'NULL'), coalesce(f.%[2]s::text, 'NULL'))))[1:5], '{}')
FROM unnest($1::bigint[], $2::text[]) AS w(id, want)
LEFT JOIN %[1]s f ON f.id = w.id
WHERE f.id IS NULL OR f.%[2]s::text IS DISTINCT FROM w.want`, tc.final, tc.column), ids, wants).Scan(&wrong, &examples))
	require.Zero(t, wrong, "rows whose last write was lost: %v", examples)
	require.NoError(t, s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s WHERE id = ANY($1::bigint[])`, tc.final), deleted).Scan(&undeleted))
	require.Zero(t, undeleted, "rows deleted by the application are gone")
	touched := int64(len(ids) + len(deleted))
	written := append(ids, deleted...)
	var untouchedWrong int64
	query := fmt.Sprintf(tc.untouched, rows)
	args := []any{}
	if strings.Contains(query, "$1") {
		args = append(args, written)
	}
	require.NoError(t, s.pool.QueryRow(ctx, query, args...).Scan(&untouchedWrong))
	require.Zero(t, untouchedWrong, "rows nobody wrote keep their original value (converted)")
	figure(t, "expand-contract "+tc.name, "rows", rows, "writes", writes, "writes_per_second", fmt.Sprintf("%.0f", float64(writes)/writer.elapsed()),
		"failed_writes", failed, "rows_written_checked", touched, "backfill_after_kill", took, "killed_at_rows", at.RowsDone)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

func first(xs []string, n int) []string { return xs[:min(n, len(xs))] }
