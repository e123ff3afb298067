package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// The flag package prints neither its message nor the usage on a bad flag:
// the caller reports the error in one line. -h prints the usage once.
func TestParseArgs_PrintsNothingOnBadFlags(t *testing.T) {
	t.Parallel()
	newFlags := func() (*flag.FlagSet, *bytes.Buffer, *int) {
		var out bytes.Buffer
		usages := 0
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(&out)
		fs.Usage = func() { usages++; fmt.Fprintln(fs.Output(), "usage text") }
		fs.Int("n", 0, "a number")
		return fs, &out, &usages
	}
	for _, args := range [][]string{{"--colour"}, {"-n", "x"}, {"a", "-n"}} {
		fs, out, usages := newFlags()
		_, err := ParseArgs(fs, args)
		require.Error(t, err, "%v", args)
		require.Empty(t, out.String(), "%v", args)
		require.Zero(t, *usages)
	}
	for _, args := range [][]string{{"-h"}, {"a", "--help"}} {
		fs, out, usages := newFlags()
		_, err := ParseArgs(fs, args)
		require.ErrorIs(t, err, flag.ErrHelp)
		require.Equal(t, 1, *usages)
		require.Equal(t, "usage text\n", out.String(), "the usage writes to the flag set's output")
	}
	fs, out, _ := newFlags()
	rest, err := ParseArgs(fs, []string{"a", "-n", "3", "b"})
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, rest)
	fs.Usage()
	require.Equal(t, "usage text\n", out.String(), "usage and output are restored")
}

func TestReport(t *testing.T) {
	t.Parallel()
	var w bytes.Buffer
	Report(&w, "enqueue", Usagef("run: VERSION must be a positive integer, got %q", "abc"), `run "enqueue help run"`)
	require.Equal(t, "enqueue: run: VERSION must be a positive integer, got \"abc\"\nrun \"enqueue help run\"\n", w.String())

	w.Reset()
	Report(&w, "worker", errors.New("failed to connect:\n\t127.0.0.1:1: refused\n\t[::1]:1: refused"), `run "worker -h"`)
	require.Equal(t, "worker: failed to connect: 127.0.0.1:1: refused [::1]:1: refused\n", w.String(), "one line, no hint for other errors")

	w.Reset()
	Report(&w, "enqueue", nil, "hint")
	Report(&w, "enqueue", flag.ErrHelp, "hint")
	Report(&w, "enqueue", &ExitError{Code: 2, Err: errors.New("timed out")}, "hint")
	require.Equal(t, "enqueue: timed out\n", w.String())
}
