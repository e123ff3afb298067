//go:build unix

package batches

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A named pipe named like a backfill is reported, never opened: opening it
// would block until something writes to it.
func TestLoadDir_NamedPipeIsAnErrorNotAHang(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeBackfill(t, dir, "1_fine.sql", goodBackfill)
	pipe := filepath.Join(dir, "manual", "2_pipe.sql")
	writeBackfill(t, dir, "manual/3_fine.sql", goodBackfill)
	require.NoError(t, syscall.Mkfifo(pipe, 0o644))

	done := make(chan error, 2)
	go func() {
		_, err := LoadDir(dir)
		done <- err
	}()
	go func() {
		_, err := ParseFile(pipe, ModeManual)
		done <- err
	}()
	for range 2 {
		select {
		case err := <-done:
			requireFileError(t, err, pipe, 0, "not a regular file", "named pipe")
		case <-time.After(5 * time.Second):
			t.Fatal("reading a directory with a named pipe hangs")
		}
	}
}
