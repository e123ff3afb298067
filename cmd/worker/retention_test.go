package main

import (
	"testing"
	"time"
)

// --event-retention 0 keeps the history forever: the worker's config says
// so with a negative retention (zero there means the default).
func TestRetentionOf_ZeroIsForever(t *testing.T) {
	for flag, want := range map[time.Duration]time.Duration{0: -1, time.Hour: time.Hour, 2160 * time.Hour: 2160 * time.Hour} {
		if got := retentionOf(flag); got != want {
			t.Errorf("retentionOf(%s) = %s, want %s", flag, got, want)
		}
	}
}
