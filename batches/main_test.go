// The tests of this directory are the external package batches_test: they
// need internal/testdb, which imports batches, and an in-package test file
// importing it would be an import cycle.
package batches_test

import (
	"testing"

	"github.com/backfill/backfill/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }
