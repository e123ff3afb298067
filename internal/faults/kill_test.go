package faults_test

import (
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestWorkerKill9Loop kills a worker with SIGKILL eight times, each at a
// random moment of its batches (0-800 ms after it started committing), and
// starts a new one each time: the new worker takes over the dead one's
// partitions through the heartbeat, and in the end the run completes with
// every row exactly once.
func TestWorkerKill9Loop(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	s.setupCounters(pgRows, pgRate, 25)
	fastHeartbeat := []string{"--heartbeat", "200ms", "--dead-after", "1s"}

	for round := range 8 {
		before, err := s.progressOf(countVersion)
		require.NoError(t, err)
		w := s.worker("victim", nil, fastHeartbeat...)
		s.waitRows(countVersion, before.RowsDone+1)
		time.Sleep(time.Duration(rand.IntN(800)) * time.Millisecond)
		require.NoError(t, w.Signal(syscall.SIGKILL), "round %d", round)
		<-w.Exited()
		p, err := s.progressOf(countVersion)
		require.NoError(t, err)
		t.Logf("round %d: killed at %d rows", round, p.RowsDone)
		if p.RowsDone >= int64(pgRows) {
			break
		}
	}
	last := s.worker("last", nil, fastHeartbeat...)
	done := s.waitCompleted(countVersion)
	s.checkExactlyOnce(countVersion)
	stopWorkers(t, last)
	figure(t, "kill-9-loop", "kills", 8, "completed_after_last_start", done)
}
