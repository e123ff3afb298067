package batches

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The duty cycle: a run's batches may keep the database busy for at most a
// share of wall time, counted across the whole pool (each batch reserves the
// time it is expected to take, from its start to its commit, from a budget
// like the rate's before it starts, and the difference is settled with its
// partition's next batch).
// A batch that takes longer because the database is busy costs more, so the
// run slows down when the application needs the database most, and rows
// that are expensive to change go slower than cheap ones. 100% is one
// connection always busy; "off" (DutyCycleOff) is no limit.
//
// It is the gentle default: a backfill that says nothing of its pace keeps
// one connection busy DutyCycleDefault of the time, in batches of about
// BatchTimeDefault (batch_size.go). On a database that serves traffic, what
// a backfill takes from the application is about the share of the server's
// time it keeps busy, whatever its rows cost, so the duty cycle bounds that
// share directly; the adaptive batch keeps each batch short, so the
// application never waits long behind one. A busy server makes every batch
// slower, which uses the budget up faster: the backfill yields more rows
// per second the more the application needs the database.

// Bounds and defaults of Options.DutyCycle. 0 in a definition's options
// takes the default; DutyCycleOff (any negative share) is no limit, as is
// the 0 of a run recorded before the default existed.
const (
	DutyCycleMin     = 0.01
	DutyCycleMax     = 100
	DutyCycleDefault = 0.20
	DutyCycleOff     = -1
)

// ParseDutyCycle reads "25%", "0.25" or "off" (DutyCycleOff).
func ParseDutyCycle(value string) (float64, error) {
	if value == "off" {
		return DutyCycleOff, nil
	}
	v, err := strconv.ParseFloat(strings.TrimSuffix(value, "%"), 64)
	if err == nil && strings.HasSuffix(value, "%") {
		v /= 100
	}
	if err != nil || v <= 0 || !validDutyCycle(v) {
		return 0, fmt.Errorf("want a share of time between %s and %s (such as 25%%), or off, got %q",
			FormatDutyCycle(DutyCycleMin), FormatDutyCycle(DutyCycleMax), value)
	}
	return v, nil
}

// validDutyCycle: off (0 or negative), or within the bounds.
func validDutyCycle(v float64) bool { return v <= 0 || v >= DutyCycleMin && v <= DutyCycleMax }

// FormatDutyCycle shows a duty cycle as "25%", or "off" for 0 or less.
func FormatDutyCycle(v float64) string {
	if v <= 0 {
		return "off"
	}
	return strconv.FormatFloat(v*100, 'f', -1, 64) + "%"
}

// FormatShare shows a measured share of time, such as "24%".
func FormatShare(v float64) string {
	return strconv.FormatFloat(math.Round(v*100), 'f', -1, 64) + "%"
}
