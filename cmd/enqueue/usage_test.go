package main

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/internal/cli"
)

// Bad input prints one line that says what was wrong and one that says
// where to read more, never the whole usage, and exits 64.
func TestCLI_UsageErrorIsOneLineAndAHint(t *testing.T) {
	t.Parallel()
	bin := buildEnqueue(t)
	for _, tc := range []struct {
		args       []string
		line, hint string
	}{
		{nil, "enqueue: a command is required", `run "enqueue help"`},
		{[]string{"frobnicate"}, `enqueue: unknown command "frobnicate"`, `run "enqueue help"`},
		{[]string{"run"}, "enqueue: run takes one VERSION argument, got 0", `run "enqueue help run"`},
		{[]string{"run", "abc"}, `enqueue: run: VERSION must be a positive integer, got "abc"`, `run "enqueue help run"`},
		{[]string{"status", "--colour"}, "enqueue: status: flag provided but not defined: -colour", `run "enqueue help status"`},
		{[]string{"wait", "1", "--timeout", "soon"}, `enqueue: wait: invalid value "soon" for flag -timeout: parse error`, `run "enqueue help wait"`},
		{[]string{"new", "Bad-Name"}, `enqueue: new: NAME "Bad-Name" must be lower-case letters, digits and underscores, starting with a letter or digit`, `run "enqueue help new"`},
		{[]string{"help", "frobnicate"}, `enqueue: help: unknown command "frobnicate"`, `run "enqueue help"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = []string{"DATABASE_URL=" + noDatabase, "BACKFILL_DIR=" + t.TempDir()}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "%v", err)
			require.Equal(t, cli.ExitUsage, exit.ExitCode())
			require.Empty(t, stdout.String())
			require.Equal(t, tc.line+"\n"+tc.hint+"\n", stderr.String())
		})
	}
}

func TestCLI_Help(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": noDatabase}
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		out, errOut, err := runCLI(t, env, args...)
		require.NoError(t, err, "%v", args)
		require.Equal(t, usage, out, "%v", args)
		require.Empty(t, errOut)
	}
	// One command's part: its lines, its flags and the shared flags.
	for _, args := range [][]string{{"help", "run"}, {"run", "-h"}, {"run", "--help"}, {"run", "1", "-h"}} {
		out, errOut, err := runCLI(t, env, args...)
		require.Equal(t, 0, cli.ExitCode(err), "%v: %v", args, err)
		require.Empty(t, errOut)
		require.True(t, strings.HasPrefix(out, "Usage: enqueue run VERSION [flags]\n\n  run VERSION "), "%v: %s", args, out)
		require.Contains(t, out, "--again")
		require.Contains(t, out, "--dry-run")
		require.Contains(t, out, "--database-url")
		require.NotContains(t, out, "retry VERSION")
		require.NotContains(t, out, "Examples")
	}
	// Every command of the dispatch has its part.
	for _, name := range []string{"migrate", "pending", "run", "retry", "revert", "pause", "resume", "cancel", "wait", "status", "list", "new"} {
		part := commandUsage(name)
		require.True(t, strings.HasPrefix(part, "Usage: enqueue "+name), "%s: %q", name, part)
		require.Equal(t, 1, strings.Count(part, "\n  "+name+" "), "%s: one command's line: %q", name, part)
	}
	for _, name := range []string{"", "enqueue", "--dir", "VERSION", "help", "Commands:"} {
		require.Empty(t, commandUsage(name), "%q", name)
	}
	out, _, err := runCLI(t, env, "help", "wait")
	require.NoError(t, err)
	require.Contains(t, out, "--progress-every D")
	require.Contains(t, out, "cancelled: exit 1", "a wrapped line stays with its command")
}
