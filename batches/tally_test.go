package batches

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTally_AddsWithinASecondAndStoresEarlierSeconds(t *testing.T) {
	s0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s1 := s0.Add(time.Second)
	at := func(s time.Time, rows int64, busy float64) tally { return tally{Second: &s, Rows: rows, Busy: busy} }

	for _, tc := range []struct {
		name      string
		pending   tally
		second    time.Time
		rows      int64
		done      bool
		want      tally
		wantStore []tally
	}{
		{name: "the first batch", pending: tally{}, second: s0, rows: 100, want: at(s0, 100, 0.5)},
		{name: "the same second", pending: at(s0, 100, 0.5), second: s0, rows: 100, want: at(s0, 200, 1)},
		{name: "a later second", pending: at(s0, 100, 0.5), second: s1, rows: 100, want: at(s1, 100, 0.5), wantStore: []tally{at(s0, 100, 0.5)}},
		// Two transactions of the partition begun in one second may
		// checkpoint in either order: the earlier one stores the later
		// second's tally and starts its own.
		{name: "an earlier second", pending: at(s1, 100, 0.5), second: s0, rows: 100, want: at(s0, 100, 0.5), wantStore: []tally{at(s1, 100, 0.5)}},
		{name: "the last batch, same second", pending: at(s0, 100, 0.5), second: s0, rows: 50, done: true, want: tally{}, wantStore: []tally{at(s0, 150, 1)}},
		{name: "the last batch, a later second", pending: at(s0, 100, 0.5), second: s1, rows: 50, done: true, want: tally{}, wantStore: []tally{at(s0, 100, 0.5), at(s1, 50, 0.5)}},
		{name: "the last batch finds no keys", pending: at(s0, 100, 0.5), second: s0, rows: 0, done: true, want: tally{}, wantStore: []tally{at(s0, 100, 0.5)}},
		{name: "a later second finds no keys", pending: at(s0, 100, 0.5), second: s1, rows: 0, done: true, want: tally{}, wantStore: []tally{at(s0, 100, 0.5)}},
		{name: "nothing pending, no keys", pending: tally{}, second: s0, rows: 0, done: true, want: tally{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			busy := 0.0
			if tc.rows > 0 {
				busy = 0.5
			}
			next, store := tc.pending.add(tc.second, tc.rows, busy, tc.done)
			require.Equal(t, tc.want, next)
			require.Equal(t, tc.wantStore, store)
		})
	}
}
