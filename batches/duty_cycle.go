package batches

import (
	"fmt"
	"strconv"
	"strings"
)

// The duty cycle: a run's batches may keep the database busy for at most a
// share of wall time, counted across the whole pool (the time each batch
// took, from its start to its commit, taken from a budget like the rate's).
// A batch that takes longer because the database is busy costs more, so the
// run slows down when the application needs the database most, and rows
// that are expensive to change go slower than cheap ones. 100% is one
// connection always busy; 0 ("off") is no limit.

// Bounds of Options.DutyCycle.
const (
	DutyCycleMin = 0.01
	DutyCycleMax = 100
)

// ParseDutyCycle reads "25%", "0.25" or "off" (0).
func ParseDutyCycle(value string) (float64, error) {
	if value == "off" {
		return 0, nil
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

// validDutyCycle: 0 (off), or within the bounds.
func validDutyCycle(v float64) bool { return v == 0 || v >= DutyCycleMin && v <= DutyCycleMax }

// FormatDutyCycle shows a duty cycle as "25%", or "off" for 0.
func FormatDutyCycle(v float64) string {
	if v <= 0 {
		return "off"
	}
	return strconv.FormatFloat(v*100, 'f', -1, 64) + "%"
}
