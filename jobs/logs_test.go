package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// lockedBuffer is a bytes.Buffer that many goroutines may write to.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) lines(t *testing.T) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		out = append(out, m)
	}
	return out
}

func TestLogs_BatchesAtDebugStateChangesAtInfoFailuresAtError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE shares (id bigint PRIMARY KEY, parts int NOT NULL, share int);
INSERT INTO shares SELECT g, CASE WHEN g = 150 THEN 0 ELSE 4 END FROM generate_series(1, 300) g;`)
	b.writeFile(t, "6_shares.sql", "-- table: shares\n-- key: id\n-- batch: 100\n-- partitions: 1\n-- attempts: 1\n"+
		"UPDATE shares SET share = 100 / parts WHERE id BETWEEN @first AND @last;\n")
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)

	var logs lockedBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b.startWorker(t, WorkerConfig{Concurrency: 1, Logger: logger})
	b.waitState(t, 6, batches.StateFailed, 30*time.Second)

	seen := map[string]map[string]any{}
	for _, l := range logs.lines(t) {
		seen[l["level"].(string)+" "+l["msg"].(string)] = l
	}
	batch := seen["DEBUG batch done"]
	require.NotNil(t, batch, "one debug line per batch")
	for _, key := range []string{"version", "partition", "first", "last", "rows", "duration"} {
		require.Contains(t, batch, key)
	}
	require.Equal(t, "1", batch["first"])
	require.Equal(t, "100", batch["last"])
	require.NotNil(t, seen["INFO run started"])
	require.Equal(t, "failed", seen["INFO run finished"]["state"])
	failure := seen["ERROR batch failed after its last attempt"]
	require.NotNil(t, failure)
	require.Contains(t, failure["error"], "SQLSTATE 22012")
	require.Contains(t, failure["error"], "batch 101..200")
}
