package bench

import (
	"os"
	"testing"

	"github.com/backfill/backfill/internal/faults"
)

// TestMain removes the binaries faults.Build built for the benchmarks.
func TestMain(m *testing.M) {
	code := m.Run()
	faults.RemoveBinaries()
	os.Exit(code)
}
