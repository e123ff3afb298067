package faults_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/internal/faults"
)

// TestWorkerFailsClearlyWhenTheServerRefusesConnections starts a worker on a
// server with no connection slot left: it exits 1 at once with the server's
// reason on one line, rather than retrying in a loop.
func TestWorkerFailsClearlyWhenTheServerRefusesConnections(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	s.exec(`ALTER SYSTEM SET max_connections = 6`)
	s.pool.Close()
	require.NoError(t, s.pg.Restart(faults.Fast))

	// Take every slot.
	ctx := context.Background()
	var held []*pgx.Conn
	t.Cleanup(func() {
		for _, c := range held {
			_ = c.Close(ctx)
		}
	})
	for range 20 {
		c, err := pgx.Connect(ctx, s.url)
		if err != nil {
			require.Contains(t, err.Error(), "too many clients")
			break
		}
		held = append(held, c)
	}
	require.Len(t, held, 6, "every slot taken")

	started := time.Now()
	w := s.worker("refused", nil)
	select {
	case <-w.Exited():
	case <-time.After(20 * time.Second):
		t.Fatal("the worker kept trying for 20s")
	}
	took := time.Since(started)
	require.Equal(t, 1, w.ExitCode())
	out := strings.TrimSpace(w.Stderr.String())
	require.Contains(t, out, "too many clients")
	require.Equal(t, 1, strings.Count(out, "\n")+1, "one line: %s", out)
	figure(t, "refused-connections", "exit_after", took)
}
