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

// liveWriter is an application writing to accounts the whole time: each of
// its goroutines owns the ids with its remainder, one row per transaction,
// and remembers what it last wrote to each, so that at the end every write
// can be checked.
type liveWriter struct {
	pool *pgxpool.Pool
	// column is the email column the application writes: "email" before
	// the switch, "email_address" after.
	column atomic.Value
	writes atomic.Int64
	failed atomic.Int64
	mu     sync.Mutex
	errs   []string
	// model[id] is the last email written, "" once deleted.
	model []map[int64]string
	stop  chan struct{}
	done  sync.WaitGroup
	// started and stopped bound the time it wrote.
	started, stopped time.Time
}

const liveWriters = 4

func startLiveWriter(pool *pgxpool.Pool, rows int64) *liveWriter {
	w := &liveWriter{pool: pool, stop: make(chan struct{}), started: time.Now()}
	w.column.Store("email")
	for g := range liveWriters {
		w.model = append(w.model, map[int64]string{})
		w.done.Add(1)
		go w.run(g, rows)
	}
	return w
}

// run inserts new ids past rows, and updates and deletes random ones of its
// own, until stopped.
func (w *liveWriter) run(g int, rows int64) {
	defer w.done.Done()
	model := w.model[g]
	next := rows + int64(g) + 1 // this goroutine's next new id
	rng := rand.New(rand.NewPCG(uint64(g), 7))
	for n := 0; ; n++ {
		select {
		case <-w.stop:
			return
		default:
		}
		col := w.column.Load().(string)
		value := fmt.Sprintf("w%d-%d@%s", g, n, col)
		var sql string
		var id int64
		switch r := rng.IntN(10); {
		case r < 2:
			id, next = next, next+liveWriters
			sql = fmt.Sprintf(`INSERT INTO accounts (id, %s) VALUES ($1, $2)`, col)
		case r < 3:
			id = own(rng.Int64N(rows)+1, g)
			sql = `DELETE FROM accounts WHERE id = $1 AND $2::text IS NOT NULL`
		default:
			id = own(rng.Int64N(rows)+1, g)
			sql = fmt.Sprintf(`UPDATE accounts SET %s = $2 WHERE id = $1`, col)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		tag, err := w.pool.Exec(ctx, sql, id, value)
		cancel()
		w.writes.Add(1)
		if err != nil {
			w.failed.Add(1)
			w.mu.Lock()
			w.errs = append(w.errs, err.Error())
			w.mu.Unlock()
			continue
		}
		switch {
		case strings.HasPrefix(sql, "DELETE"):
			model[id] = ""
		case tag.RowsAffected() == 1:
			model[id] = value
		}
	}
}

// own maps id to the nearest id owned by goroutine g.
func own(id int64, g int) int64 { return id - id%liveWriters + int64(g) }

func (w *liveWriter) halt() {
	close(w.stop)
	w.done.Wait()
	w.stopped = time.Now()
}

// elapsed is how long it wrote, in seconds.
func (w *liveWriter) elapsed() float64 { return w.stopped.Sub(w.started).Seconds() }

// The seed's rename under live writes, end to end: expand while an
// application writes, backfill with a worker killed by SIGKILL, verify,
// switch the application to the new column, verify again, contract. At the
// end no write failed, and every row holds what was last written to it.
func TestExpandContract_RenameUnderLiveWrites(t *testing.T) {
	t.Parallel()
	rows := int64(1_000_000)
	if v, err := strconv.ParseInt(os.Getenv("EXPAND_ROWS"), 10, 64); err == nil && v > 0 {
		rows = v
	}
	s := newScenario(t)
	s.exec(`CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL);
INSERT INTO accounts (id, email) SELECT g, 'user' || g || '@example.com' FROM generate_series(1, ` + strconv.FormatInt(rows, 10) + `) g`)
	s.exec(`VACUUM ANALYZE accounts`)
	writer := startLiveWriter(s.pool, rows)
	defer func() {
		select {
		case <-writer.stop:
		default:
			writer.halt()
		}
	}()
	time.Sleep(500 * time.Millisecond) // the application is writing

	// Deploy 1: the kit, then its expand SQL as the application's migration.
	sqlDir := t.TempDir()
	res := s.enqueue(30*time.Second, "new", "rename_email", "--copy-column", "accounts.email:email_address", "--sql-dir", sqlDir)
	require.Zero(t, res.Code, res.Output())
	paths := strings.Fields(res.Stdout)
	require.Len(t, paths, 3, res.Stdout)
	expand, backfill, contract := paths[0], paths[1], paths[2]
	version := strings.SplitN(filepath.Base(backfill), "_", 2)[0]
	s.exec(`SET lock_timeout = '5s'; ` + readFile(t, expand))
	res = s.enqueue(60*time.Second, "pending")
	require.Zero(t, res.Code, res.Output())
	// Full speed for the test: the gentle default would take minutes.
	res = s.enqueue(30*time.Second, "throttle", version, "--duty-cycle", "off")
	require.Zero(t, res.Code, res.Output())

	fastHeartbeat := []string{"--heartbeat", "200ms", "--dead-after", "1s"}
	victim := s.worker("victim", nil, fastHeartbeat...)
	v, _ := strconv.ParseInt(version, 10, 64)
	at := s.waitRows(v, rows/5)
	require.NoError(t, victim.Signal(syscall.SIGKILL))
	<-victim.Exited()
	t.Logf("worker killed at %d rows", at.RowsDone)
	w2 := s.worker("survivor", nil, fastHeartbeat...)
	took := s.waitCompleted(v)
	res = s.enqueue(5*time.Minute, "verify", version, "--progress-every", "10s")
	require.Zero(t, res.Code, "verify after the backfill, under writes: %s", res.Output())
	t.Logf("%s", strings.TrimSpace(res.Stdout))

	// Deploy 2: the application reads and writes email_address only.
	writer.column.Store("email_address")
	time.Sleep(time.Second)
	res = s.enqueue(5*time.Minute, "verify", version, "--progress-every", "10s")
	require.Zero(t, res.Code, "verify after the switch, under writes: %s", res.Output())

	// Deploy 3: the contract, in one transaction as migration tools run it,
	// while the application keeps writing.
	s.exec(readFile(t, contract))
	time.Sleep(500 * time.Millisecond)
	writer.halt()
	stopWorkers(t, w2)

	writes, failed := writer.writes.Load(), writer.failed.Load()
	writer.mu.Lock()
	require.Zero(t, failed, "writes failed because of the change: %v", first(writer.errs, 5))
	writer.mu.Unlock()

	// Every row holds its last write, or its original value if none touched it.
	var touched, wrong int64
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, model := range writer.model {
		for id, want := range model {
			touched++
			var got *string
			err := s.pool.QueryRow(ctx, `SELECT email_address FROM accounts WHERE id = $1`, id).Scan(&got)
			switch {
			case want == "" && err == nil:
				wrong++
				t.Logf("row %d was deleted but has %q", id, *got)
			case want != "" && (err != nil || got == nil || *got != want):
				wrong++
				t.Logf("row %d: want %q, got %v (%v)", id, want, got, err)
			}
		}
	}
	require.Zero(t, wrong, "rows whose last write was lost")
	var untouchedWrong int64
	require.NoError(t, s.pool.QueryRow(ctx, `SELECT count(*) FROM accounts WHERE id <= $1 AND email_address NOT LIKE 'w%' AND email_address <> 'user' || id || '@example.com'`, rows).Scan(&untouchedWrong))
	require.Zero(t, untouchedWrong, "rows nobody wrote keep their original value")
	var nullable string
	require.NoError(t, s.pool.QueryRow(ctx, `SELECT is_nullable FROM information_schema.columns WHERE table_name = 'accounts' AND column_name = 'email_address'`).Scan(&nullable))
	require.Equal(t, "NO", nullable)
	figure(t, "expand-contract-rename", "rows", rows, "writes", writes, "writes_per_second", fmt.Sprintf("%.0f", float64(writes)/writer.elapsed()),
		"failed_writes", failed, "rows_written_checked", touched, "backfill_after_kill", took, "killed_at_rows", at.RowsDone)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

func first(xs []string, n int) []string { return xs[:min(n, len(xs))] }
