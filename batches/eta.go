package batches

import "math"

// How status estimates a run's speed and ETA, and how sure it is of them.
//
// The speed is the rows of the speed window (statusQuery) over its time,
// but a window that starts with the run, or with its last resume, leaves its
// first second out: in that second every partition runs its first batch
// before it has paid anything to the duty cycle (a batch pays its time after
// it ran), and the limiters' burst goes too, so the first second does far
// more than the pace and an ETA from it is short (at 1 s, 17 s for a run that
// took 49.9 s). Until a whole second has been measured after the warm-up,
// the speed is the one so far, but no faster than what the limits allow at
// the measured cost of a row: the rate, the duty cycle times the rows per
// second of database time, and the live workers' slots (each at most always
// busy) times the same.
//
// The ETA is the rows left at that speed, and comes with a range: the speed
// is taken to vary from second to second by the spread measured over the
// whole seconds so far, weighed with an assumed spread (30%, or 5% while the
// rate limit sets the pace with the other limits far above it, plus one
// batch a second for runs of few, big batches) until there are enough of
// them; the speed's uncertainty is twice that spread over the square root of
// the seconds measured (plus one for the estimate before them), and never
// below 5%. The range is the rows left at the speed that much faster (no
// faster than the rate, but up to the speed so far while it is still
// estimated from the limits) and that much slower, plus a second for the last
// batches and hand-overs. So it is wide in the first seconds and narrows as
// seconds are measured.

// speedSample is what statusQuery measured of a run's throughput.
type speedSample struct {
	// Span is the window's seconds, and Rows and Busy the rows and the
	// seconds of database time of its batches.
	Span, Rows, Busy float64
	// SteadySpan, SteadyRows and SteadyBusy are the same after the warm-up
	// (the whole window when it starts with the speed window); SteadySpan
	// is zero or less while the warm-up goes on.
	SteadySpan, SteadyRows, SteadyBusy float64
	// WholeSeconds counts the whole seconds of the steady part before the
	// one going on; WholeRows are their rows and WholeSquares the sum of
	// each one's rows squared.
	WholeSeconds, WholeRows, WholeSquares float64
	// Slots is how many batches the live workers can work at once.
	Slots int64
}

// Settings of the estimate (see above).
const (
	// steadyAfter is how long after the warm-up the speed is measured
	// rather than estimated from the limits.
	steadyAfter = 1.0
	// spreadAssumed is the relative spread of a run's rows from second to
	// second assumed until measured, and spreadRateBound the same while the
	// rate limit alone sets the pace.
	spreadAssumed   = 0.30
	spreadRateBound = 0.05
	// spreadWeight is how many measured seconds the assumed spread counts
	// as.
	spreadWeight = 2.0
	// rateBoundHeadroom: the rate limit alone sets the pace when the speed
	// is within 10% of it and the other limits allow this many times more.
	rateBoundHeadroom = 2.0
	// uncertaintyMin is the least relative uncertainty of a speed (about
	// 5%: no run keeps its speed exactly), and uncertaintyMax the most (a
	// factor of about 4.5 either way).
	uncertaintyMin = 0.05
	uncertaintyMax = 1.5
	// etaTail is the time the last batches and hand-overs of a run take
	// that its speed does not show, added to the slow end of the range.
	etaTail = 1.0
)

// speedEstimate is a run's speed, the range it lies within, and the share of
// the window its batches kept the database busy (the whole window, warm-up
// included: the busy_seconds of a batch stop at its checkpoint, before its
// commit, so a run its duty cycle holds reads a little under it once steady,
// and status says the duty cycle holds it back from 90% of it on).
type speedEstimate struct {
	Speed, Busy      float64
	Slowest, Fastest float64
}

// estimateSpeed estimates the speed of a run with rate and duty cycle in
// force (0: none), partitions live partitions and batches of batchRows rows
// on average, from m.
func estimateSpeed(m speedSample, rate, duty float64, partitions int64, batchRows float64) speedEstimate {
	if m.Span <= 0 || m.Rows <= 0 {
		return speedEstimate{}
	}
	sofar := m.Rows / m.Span
	// Rows per second of database time, and what each limit allows.
	var allowedByDuty, allowedBySlots float64
	if m.Busy > 0 {
		perBusySecond := m.Rows / m.Busy
		if duty > 0 {
			allowedByDuty = duty * perBusySecond
		}
		if slots := min(m.Slots, partitions); slots > 0 {
			allowedBySlots = float64(slots) * perBusySecond
		}
	}
	e := speedEstimate{Busy: m.Busy / m.Span}
	measured := m.SteadySpan >= steadyAfter
	if measured {
		e.Speed = m.SteadyRows / m.SteadySpan
	} else {
		e.Speed = sofar
		for _, limit := range []float64{rate, allowedByDuty, allowedBySlots} {
			if limit > 0 {
				e.Speed = min(e.Speed, limit)
			}
		}
	}
	if rate > 0 {
		e.Speed = min(e.Speed, rate)
	}
	if e.Speed <= 0 {
		return e
	}

	// The spread from second to second: assumed, then measured.
	assumed := spreadAssumed
	if rate > 0 && e.Speed >= 0.9*rate {
		others := math.Inf(1)
		for _, limit := range []float64{allowedByDuty, allowedBySlots} {
			if limit > 0 {
				others = min(others, limit)
			}
		}
		if !math.IsInf(others, 1) && others >= rateBoundHeadroom*rate {
			assumed = spreadRateBound
		}
	}
	// A batch more or less in a second.
	if batchRows > 0 {
		assumed = math.Hypot(assumed, batchRows/e.Speed)
	}
	spread2 := assumed * assumed
	if n := math.Floor(m.WholeSeconds); n >= 2 && m.WholeRows > 0 {
		mean := m.WholeRows / n
		variance := max(m.WholeSquares-n*mean*mean, 0) / (n - 1)
		spread2 = (spreadWeight*spread2 + (n-1)*variance/(mean*mean)) / (spreadWeight + n - 1)
	}
	seconds := max(m.SteadySpan, 0) + 1
	u := min(math.Sqrt(4*spread2/seconds+uncertaintyMin*uncertaintyMin), uncertaintyMax)
	e.Slowest, e.Fastest = e.Speed*math.Exp(-u), e.Speed*math.Exp(u)
	if !measured {
		// The limits may not hold the run back as much as they seem to
		// (a run that overshoots its duty cycle): up to the speed so far.
		e.Fastest = max(e.Fastest, sofar)
	}
	if rate > 0 {
		e.Fastest = min(e.Fastest, rate)
	}
	return e
}

// etaRange is the time left for rows at e: the point estimate and its range.
func (e speedEstimate) etaRange(rows int64) (eta, low, high float64) {
	left := float64(max(rows, 0))
	return left / e.Speed, left / e.Fastest, left/e.Slowest + etaTail
}
