package bench

import "testing"

func TestWaitCounts_SharesOfTheSessionsActiveTime(t *testing.T) {
	w := waitCounts{}
	if got := w.waiting(); got != 0 {
		t.Errorf("nothing seen: waiting %.1f%%, want 0", got)
	}
	if got := w.top(3); got != "nothing" {
		t.Errorf("nothing seen: top %q, want nothing", got)
	}
	w.add(waitCounts{"CPU": 50, "LWLock:WALBufMapping": 30})
	w.add(waitCounts{"Lock:extend": 12, "IO:WALSync": 6, "LWLock:WALWrite": 2, "CPU": 100})
	// 200 looks: 150 on a CPU, 50 waiting.
	if got := w.waiting(); got != 25 {
		t.Errorf("waiting %.1f%%, want 25", got)
	}
	if got, want := w.top(2), "LWLock:WALBufMapping 15%, Lock:extend 6%"; got != want {
		t.Errorf("top 2 %q, want %q", got, want)
	}
	if got, want := w.top(9), "LWLock:WALBufMapping 15%, Lock:extend 6%, IO:WALSync 3%, LWLock:WALWrite 1%"; got != want {
		t.Errorf("top 9 %q, want %q", got, want)
	}
}
