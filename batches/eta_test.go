package batches

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// steadySample is a run that did perSecond rows a second (busy share busy)
// for seconds whole seconds after a warm-up second of burst rows, measured
// at the end of its last second. spread is the relative spread of its
// seconds' rows (each pair of seconds has perSecond·(1±spread); an odd last
// one perSecond).
func steadySample(burst, perSecond, busy float64, seconds int, spread float64, slots int64) speedSample {
	m := speedSample{Span: float64(seconds) + 1, Rows: burst, Busy: busy * burst / perSecond, Slots: slots}
	for i := range seconds {
		rows := perSecond * (1 + spread*float64(1-2*(i%2)))
		if i == seconds-1 && seconds%2 == 1 {
			rows = perSecond
		}
		m.Rows += rows
		m.Busy += busy * rows / perSecond
		m.SteadyRows += rows
		m.SteadyBusy += busy * rows / perSecond
		m.WholeRows += rows
		m.WholeSquares += rows * rows
	}
	m.SteadySpan, m.WholeSeconds = float64(seconds), float64(seconds)
	return m
}

func TestEstimateSpeed_NothingMeasured(t *testing.T) {
	t.Parallel()
	require.Zero(t, estimateSpeed(speedSample{}, 1000, 0.2, 8, 100))
	require.Zero(t, estimateSpeed(speedSample{Span: 3}, 1000, 0.2, 8, 100), "no rows yet")
}

// In the warm-up, a duty-cycled run's burst (every partition's first batch,
// paid for afterwards) does not set its speed: what the duty cycle allows
// at the measured rows per second of database time does. The range reaches
// up to the speed so far, in case the run does not keep to its duty cycle.
func TestEstimateSpeed_TheWarmUpDoesNotSetTheSpeed(t *testing.T) {
	t.Parallel()
	// 0.7 s in: 8 batches of 100 rows, 25 ms each, and 8 more of the next
	// ones: 1,600 rows in 0.4 s of database time, 4,000 rows a busy second.
	m := speedSample{Span: 0.7, Rows: 1600, Busy: 0.4, SteadySpan: -0.3, Slots: 8}
	e := estimateSpeed(m, 0, 0.3, 8, 100)
	require.InDelta(t, 1200, e.Speed, 1e-9, "30% of 4,000 rows a busy second, not the 2,286 rows/s so far")
	require.InDelta(t, 0.4/0.7, e.Busy, 1e-9)
	require.Less(t, e.Slowest, e.Speed)
	require.InDelta(t, 1600/0.7, e.Fastest, 1e-9, "up to the speed so far")

	// Half a second after the warm-up: still the estimate, the steady part
	// is too short to measure.
	m = speedSample{Span: 1.8, Rows: 2200, Busy: 0.55, SteadySpan: 0.5, SteadyRows: 600, SteadyBusy: 0.15, Slots: 8}
	require.InDelta(t, 1200, estimateSpeed(m, 0, 0.3, 8, 100).Speed, 1e-9)

	// A whole second after it: measured, the warm-up left out.
	m = steadySample(1600, 1000, 0.25, 1, 0, 8)
	e = estimateSpeed(m, 0, 0.3, 8, 100)
	require.InDelta(t, 1000, e.Speed, 1e-9, "the second after the warm-up, not 2,600 rows over 2 s")
	require.InDelta(t, (0.4+0.25)/2, e.Busy, 1e-9, "busy over the whole window")
}

// The speed is never above the rate in force, nor is the fast end of its
// range: the limiter holds it.
func TestEstimateSpeed_NeverAboveTheRate(t *testing.T) {
	t.Parallel()
	for _, m := range []speedSample{
		{Span: 0.5, Rows: 1400, Busy: 0.05, SteadySpan: -0.5, Slots: 8},
		steadySample(1400, 2050, 0.05, 4, 0.02, 8),
	} {
		e := estimateSpeed(m, 2000, 0, 8, 100)
		require.Equal(t, 2000.0, e.Speed)
		require.Equal(t, 2000.0, e.Fastest)
		require.Less(t, e.Slowest, 2000.0)
	}
}

// A run the rate limit paces, with the other limits far above it, has a
// narrow range from the start; one whose limits are close, or unknown, has
// a wide one until it has measured a few seconds.
func TestEstimateSpeed_TheRateLimitIsKnownFromTheStart(t *testing.T) {
	t.Parallel()
	width := func(e speedEstimate) float64 { return e.Fastest / e.Slowest }
	// 0.8 s in, at the rate; 2,000 rows in 0.05 s of database time: 8 slots
	// could do 320,000 rows/s.
	early := speedSample{Span: 0.8, Rows: 1700, Busy: 0.04, SteadySpan: 0, Slots: 8}
	bound := estimateSpeed(early, 2000, 0, 8, 100)
	require.Equal(t, 2000.0, bound.Speed)
	require.Less(t, width(bound), 1.25, "%+v", bound)

	// The same run with a duty cycle that allows barely more than the rate.
	close := estimateSpeed(early, 2000, 0.06, 8, 100)
	require.Equal(t, 2000.0, close.Speed)
	require.Greater(t, width(close), 1.5, "%+v", close)

	// And with no measured database time: nothing says the rate binds.
	unknown := estimateSpeed(speedSample{Span: 0.8, Rows: 1700, SteadySpan: 0, Slots: 8}, 2000, 0, 8, 100)
	require.Greater(t, width(unknown), 1.5, "%+v", unknown)
}

// The range narrows as whole seconds are measured, and more slowly when
// they spread more.
func TestEstimateSpeed_TheRangeNarrowsAsSecondsAreMeasured(t *testing.T) {
	t.Parallel()
	width := func(seconds int, spread float64) float64 {
		e := estimateSpeed(steadySample(2000, 1000, 0.2, seconds, spread, 8), 0, 0.2, 8, 100)
		require.InDelta(t, 1000, e.Speed, 1e-6)
		require.Less(t, e.Slowest, e.Speed)
		require.Greater(t, e.Fastest, e.Speed)
		require.InDelta(t, math.Log(e.Speed/e.Slowest), math.Log(e.Fastest/e.Speed), 1e-9, "as much faster as slower")
		return e.Fastest / e.Slowest
	}
	last := math.Inf(1)
	for _, seconds := range []int{1, 2, 3, 5, 10, 30, 60} {
		w := width(seconds, 0.1)
		t.Logf("%2d s measured, spread 10%%: the fast end %.2f times the slow end", seconds, w)
		require.Less(t, w, last, "%d s", seconds)
		last = w
		if seconds >= 2 { // the spread of one second is not measured
			require.Greater(t, width(seconds, 0.4), w, "a bigger spread, a wider range at %d s", seconds)
		}
	}
	// A minute of steady seconds: within about 10% either way.
	require.Less(t, width(60, 0.1), 1.25)
	// Never narrower than about 5% either way.
	require.GreaterOrEqual(t, width(60, 0), math.Exp(2*uncertaintyMin)-1e-9)
	// Few batches a second of many rows: each second's count is coarse.
	coarse := estimateSpeed(speedSample{Span: 1.5, Rows: 16000, Busy: 0.1, SteadySpan: 0.5, Slots: 8}, 0, 0, 8, 8000)
	fine := estimateSpeed(speedSample{Span: 1.5, Rows: 16000, Busy: 0.1, SteadySpan: 0.5, Slots: 8}, 0, 0, 8, 100)
	require.Greater(t, coarse.Fastest/coarse.Slowest, fine.Fastest/fine.Slowest)
}

// The ETA is the rows left at the speed; its range the rows left at the
// fast and slow ends, plus a second for the run's last batches.
func TestSpeedEstimate_ETARange(t *testing.T) {
	t.Parallel()
	e := speedEstimate{Speed: 1000, Slowest: 500, Fastest: 2000}
	eta, low, high := e.etaRange(10000)
	require.Equal(t, 10.0, eta)
	require.Equal(t, 5.0, low)
	require.Equal(t, 20.0+etaTail, high)
	eta, low, high = e.etaRange(-5)
	require.Zero(t, eta)
	require.Zero(t, low)
	require.Equal(t, etaTail, high)
}

// explain fills in the ETA and its range for an active run only.
func TestExplain_ETARangeOnlyWhileActive(t *testing.T) {
	t.Parallel()
	m := steadySample(1600, 1000, 0.25, 5, 0.1, 8)
	for _, state := range []State{StatePending, StateRunning, StatePaused, StateCompleted, StateFailed, StateCancelled} {
		s := RunStatus{State: state, RowsDone: 6600, RowsEstimated: 20000, BatchesDone: 66, DutyCycle: 0.25, PartitionsActive: 8}
		s.explain(m)
		if state.Active() {
			require.InDelta(t, 1000, s.RowsPerSecond, 1e-9)
			require.NotNil(t, s.ETASeconds, state)
			require.InDelta(t, 13.4, *s.ETASeconds, 1e-9)
			require.Less(t, *s.ETALowSeconds, *s.ETASeconds)
			require.Greater(t, *s.ETAHighSeconds, *s.ETASeconds)
			continue
		}
		require.Nil(t, s.ETASeconds, state)
		require.Nil(t, s.ETALowSeconds, state)
		require.Nil(t, s.ETAHighSeconds, state)
		if state == StatePaused {
			require.Zero(t, s.RowsPerSecond)
		}
	}
}
