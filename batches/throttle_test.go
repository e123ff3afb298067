package batches

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A throttle shows only what it sets, and lays only that over the options.
func TestThrottle_ShowsAndAppliesWhatItSets(t *testing.T) {
	t.Parallel()
	rate, batch, off, lag, none := 5000.0, 500, time.Duration(0), -time.Duration(1), ""
	change := Throttle{Rate: &rate, BatchTime: &off, MaxReplicaLag: &lag, ThrottleQuery: &none}
	require.Equal(t, `rate 5000 rows/s, batch time off, max replica lag off, throttle query off`, change.String())

	o := Options{Table: "t", Key: "id", BatchSize: 1000, BatchTime: time.Second, Rate: 10, ThrottleQuery: "SELECT true", MaxActiveBackends: 7}
	got := change.merge(Throttle{BatchSize: &batch}).apply(o)
	require.Equal(t, Options{Table: "t", Key: "id", BatchSize: 500, Rate: 5000, MaxReplicaLag: -1, MaxActiveBackends: 7}, got)

	before := inForce(o).only(change)
	require.Equal(t, "rate 10 rows/s, batch time 1s, max replica lag 5s, throttle query \"SELECT true\"", before.String())
	require.Nil(t, before.BatchSize, "only the fields changed")
}
