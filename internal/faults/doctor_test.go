package faults_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/internal/faults"
)

// Behind a PgBouncer, "enqueue doctor" sees a pooler in between (the port it
// connects to is not the server's) and says how to run the workers there;
// connected to the server itself, it says nothing of a pooler.
func TestDoctor_SeesAPoolerInBetween(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	res := s.enqueue(30*time.Second, "doctor")
	require.Zero(t, res.Code, res.Output())
	require.NotContains(t, res.Stdout, "pooler")

	bouncer := faults.NewPgBouncer(t, s.pg, faults.PoolMode("transaction"))
	env := append(s.env(), "DATABASE_URL="+bouncer.URL("postgres"))
	res = faults.Run(t, 30*time.Second, env, s.bins.Enqueue, "doctor")
	require.Zero(t, res.Code, "a pooler is a warning, not a failure: %s", res.Output())
	require.Contains(t, res.Stdout, "warn  pooler")
	require.Contains(t, res.Stdout, "a connection pooler or proxy is in between")
	require.Contains(t, res.Stdout, "--pool-mode transaction")
	require.Equal(t, 1, strings.Count(res.Stdout, "warn"), res.Stdout)
}
