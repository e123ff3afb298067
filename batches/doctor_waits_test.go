package batches

import (
	"strings"
	"testing"
	"time"
)

func TestWaitsFinding_WarnsAboutTheWaitThatTakesTheBatchesTime(t *testing.T) {
	look := time.Second
	for _, tc := range []struct {
		name           string
		looks          int
		counts         map[string]int
		status, detail string
		advice         string // a part of it
	}{
		{"no session", 0, nil, FindingOK, "no backfill session is connected to this database", ""},
		{"sessions idle", 100, nil, FindingOK, "no batch ran a statement during the 1s looked at", ""},
		{"on a CPU", 100, map[string]int{"CPU": 380, "IO:WALSync": 20}, FindingOK,
			"4.0 backfill statements running on average over 1s: on a CPU 95%, IO:WALSync 5%", ""},
		{"WAL buffers full", 100, map[string]int{"CPU": 200, "LWLock:WALBufMapping": 120, "Lock:extend": 60, "IO:WALSync": 12, "LWLock:WALInsert": 8},
			FindingWarn, "4.0 backfill statements running on average over 1s: on a CPU 50%, LWLock:WALBufMapping 30%, Lock:extend 15%, IO:WALSync 3%",
			"free WAL buffers (wal_buffers is 4MB)"},
		{"extending the table", 10, map[string]int{"CPU": 5, "Lock:extend": 5}, FindingWarn,
			"1.0 backfill statements running on average over 1s: on a CPU 50%, Lock:extend 50%", "fillfactor below 100"},
		{"committing", 10, map[string]int{"CPU": 7, "IO:WALSync": 3}, FindingWarn,
			"1.0 backfill statements running on average over 1s: on a CPU 70%, IO:WALSync 30%", "wait for the WAL (IO:WALSync)"},
		{"a row lock", 10, map[string]int{"Lock:transactionid": 10}, FindingWarn,
			"1.0 backfill statements running on average over 1s: on a CPU 0%, Lock:transactionid 100%", "locks other sessions hold (Lock:transactionid)"},
		{"below the warning", 10, map[string]int{"CPU": 81, "Lock:extend": 19}, FindingOK,
			"10.0 backfill statements running on average over 1s: on a CPU 81%, Lock:extend 19%", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := sessionWaits{looks: tc.looks, counts: map[string]int{}}
			for k, v := range tc.counts {
				w.counts[k] = v
			}
			f := waitsFinding(w, look, "4MB")
			if f.Check != "waits" || f.Status != tc.status || f.Detail != tc.detail {
				t.Fatalf("got %s %s %q, want %s %q", f.Check, f.Status, f.Detail, tc.status, tc.detail)
			}
			if (tc.advice == "") != (f.Advice == "") || !strings.Contains(f.Advice, tc.advice) {
				t.Fatalf("advice %q, want one with %q", f.Advice, tc.advice)
			}
		})
	}
}
