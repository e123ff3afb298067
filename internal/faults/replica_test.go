package faults_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/faults"
)

// The replica lag backfill: the counting backfill over 2 partitions at
// 2,000 rows/s (20 s of work), held back while a replica replays more than 1 s behind.
const (
	lagRows      = 40000
	lagBatch     = 100
	lagParts     = 2
	lagRate      = 2000
	lagReplica   = "replica1"
	lagLimitText = "1s"
)

const replicaLagFile = `-- Counts how often each row was processed; held back while a replica lags.
-- table: counters
-- key: id
-- batch: %d
-- partitions: %d
-- rate: %d
-- attempts: 5
-- max_replica_lag: %s
UPDATE counters SET n = n + 1 WHERE id BETWEEN @first AND @last;
`

// healthStatus is what this test reads of "enqueue status --json".
type healthStatus struct {
	State         string          `json:"state"`
	RowsDone      int64           `json:"rows_done"`
	BatchesFailed int64           `json:"batches_failed"`
	HeldBack      string          `json:"held_back"`
	Health        *batches.Health `json:"health"`
}

// lagSignal is the reading's replica_lag signal; ok is false when there is
// none.
func (h healthStatus) lagSignal() (batches.Signal, bool) {
	if h.Health == nil {
		return batches.Signal{}, false
	}
	for _, s := range h.Health.Signals {
		if s.Name == batches.SignalReplicaLag {
			return s, true
		}
	}
	return batches.Signal{}, false
}

// heldByLag reports whether status says the run is held back by the
// replica's lag.
func (h healthStatus) heldByLag() bool {
	return strings.Contains(h.HeldBack, "database under strain: replica lag") &&
		strings.Contains(h.HeldBack, "(replica "+lagReplica+")")
}

func (s *scenario) healthStatus(version int64) (healthStatus, error) {
	s.t.Helper()
	res := s.enqueue(30*time.Second, "status", "--json", strconv.FormatInt(version, 10))
	if res.Code != 0 {
		return healthStatus{}, fmt.Errorf("enqueue status: exit %d: %s", res.Code, res.Output())
	}
	var runs []healthStatus
	if err := json.Unmarshal([]byte(res.Stdout), &runs); err != nil {
		return healthStatus{}, fmt.Errorf("enqueue status --json: %w\n%s", err, res.Stdout)
	}
	if len(runs) == 0 {
		return healthStatus{}, fmt.Errorf("version %d has no run", version)
	}
	return runs[len(runs)-1], nil
}

// TestHealth_ReplicaLagHoldsTheRun pauses the replay of a streaming replica
// mid-run: the replica's lag grows past the run's max_replica_lag (1 s), the
// worker's heartbeat sees it in pg_stat_replication, and the run is held
// back (status says why; no batch fails, rows stop) until replay resumes;
// then it goes on and completes, every row exactly once.
func TestHealth_ReplicaLagHoldsTheRun(t *testing.T) {
	t.Parallel()
	started := time.Now()
	s := newScenario(t)
	replicaStarted := time.Now()
	replica := faults.NewReplica(t, s.pg, lagReplica)
	replicaReady := time.Since(replicaStarted)

	s.rows = lagRows
	s.exec(`CREATE TABLE counters (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO counters (id) SELECT g FROM generate_series(1, ` + strconv.Itoa(lagRows) + `) g;
ANALYZE counters;`)
	require.NoError(t, os.WriteFile(s.countingFilePath(),
		[]byte(fmt.Sprintf(replicaLagFile, lagBatch, lagParts, lagRate, lagLimitText)), 0o644))
	res := s.enqueue(30*time.Second, "pending")
	require.Zero(t, res.Code, "enqueue pending: %s", res.Output())

	// Heartbeats every 500 ms: the health signals are read that often.
	w := s.worker("w1", nil, "--heartbeat", "500ms", "--dead-after", "3s")
	s.waitRows(countVersion, 1000)

	// Before the pause: the signal is read and does not hold.
	var st healthStatus
	s.waitFor("a replica_lag reading that does not hold", 10*time.Second, func() (bool, error) {
		var err error
		st, err = s.healthStatus(countVersion)
		sig, ok := st.lagSignal()
		return err == nil && ok && !sig.Holds && sig.Limit == 1, err
	})
	require.NotContains(t, st.HeldBack, "database under strain", "held back before the replica lags")

	require.NoError(t, replica.PauseReplay())
	var lagSeen float64
	toHold := s.waitFor("the run held back by the replica's lag", 20*time.Second, func() (bool, error) {
		var err error
		st, err = s.healthStatus(countVersion)
		if err != nil {
			return false, err
		}
		if sig, ok := st.lagSignal(); ok && sig.Holds {
			lagSeen = sig.Value
		}
		return st.heldByLag(), nil
	})
	held := time.Now()
	sig, ok := st.lagSignal()
	require.True(t, ok, "status must show the replica_lag reading: %+v", st.Health)
	require.True(t, sig.Holds, "replica_lag must hold: %+v", sig)
	require.Greater(t, sig.Value, 1.0, "replica_lag value")
	require.Equal(t, 1.0, sig.Limit, "replica_lag limit")
	require.Equal(t, "replica "+lagReplica, sig.Detail)
	require.Equal(t, "running", st.State)
	require.Zero(t, st.BatchesFailed, "a held run fails no batch")
	heldRows := st.RowsDone
	require.Less(t, heldRows, int64(lagRows), "the run must still be going when it is held")

	// While held: the rows stay put (a batch that had passed its check
	// before the reading may still land, one per partition), nothing fails,
	// and status keeps saying why. The lag keeps growing.
	var lastRows int64
	for time.Since(held) < 1500*time.Millisecond {
		st, err := s.healthStatus(countVersion)
		require.NoError(t, err)
		require.True(t, st.heldByLag(), "the hold must last while replay is paused: held_back=%q", st.HeldBack)
		require.Equal(t, "running", st.State)
		require.Zero(t, st.BatchesFailed, "a held run fails no batch")
		if sig, ok := st.lagSignal(); ok && sig.Value > lagSeen {
			lagSeen = sig.Value
		}
		lastRows = st.RowsDone
		time.Sleep(100 * time.Millisecond)
	}
	landed := lastRows - heldRows
	require.LessOrEqual(t, landed, int64(lagBatch*lagParts),
		"rows done while held: at most the batches in flight (one per partition) may land")
	rep, err := s.pg.Replication(lagReplica)
	require.NoError(t, err)
	require.NotNil(t, rep.ReplayLag, "pg_stat_replication.replay_lag while replay is paused: %+v", rep)
	lagPrimary := *rep.ReplayLag
	requireRunning(t, w)

	resumed := time.Now()
	require.NoError(t, replica.ResumeReplay())
	toRelease := s.waitFor("the hold released after replay resumed", 20*time.Second, func() (bool, error) {
		var err error
		st, err = s.healthStatus(countVersion)
		return err == nil && !strings.Contains(st.HeldBack, "database under strain"), err
	})
	sig, _ = st.lagSignal()
	require.False(t, sig.Holds, "replica_lag after replay resumed: %+v", sig)
	lagAfter := sig.Value
	s.waitFor("rows moving again after replay resumed", 20*time.Second, func() (bool, error) {
		p, err := s.progressOf(countVersion)
		return err == nil && p.RowsDone > lastRows, err
	})
	moved := time.Since(resumed)

	requireRunning(t, w)
	s.waitCompleted(countVersion)
	s.checkExactlyOnce(countVersion)
	final, _ := s.status(countVersion)
	require.Zero(t, final.BatchesFailed, "batches_failed")
	stopWorkers(t, w)
	// The worker logs a change of the reason a run is held back.
	heldLines := 0
	for _, l := range w.Stderr.Lines() {
		if strings.Contains(l.Text, "run held back") {
			heldLines++
			t.Logf("worker: %s", l.Text)
		}
	}
	figure(t, "health-replica-lag", "replica_ready", replicaReady, "rows_held_at", heldRows, "hold_after_pause", toHold,
		"lag_seen", fmt.Sprintf("%.2fs", lagSeen), "replay_lag_on_primary", lagPrimary, "rows_landed_while_held", landed,
		"release_after_resume", toRelease, "rows_move_after_resume", moved, "lag_after_release", fmt.Sprintf("%.2fs", lagAfter),
		"held_back_log_lines", heldLines, "total", time.Since(started))
}
