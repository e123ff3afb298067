package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/internal/cli"
)

// The usage text names every flag each command defines, and no other: the
// completion scripts and "enqueue help CMD" are built from it.
func TestUsage_NamesEveryFlagOfEachCommand(t *testing.T) {
	t.Parallel()
	shared := sharedFlags()
	for _, name := range commandNames() {
		if name == "completion" {
			require.Empty(t, commandFlags(name))
			continue
		}
		_, fs, _, err := newCommand(name, func(string) string { return "" }, io.Discard, io.Discard)
		require.NoError(t, err, name)
		var defined []string
		fs.VisitAll(func(f *flag.Flag) {
			if !slices.Contains(shared, "--"+f.Name) {
				defined = append(defined, "--"+f.Name)
			}
		})
		require.ElementsMatch(t, defined, commandFlags(name), "enqueue %s: the flags it defines and the ones its usage names", name)
	}
	require.ElementsMatch(t, []string{"--database-url", "--redis-url", "--dir", "--schema", "--lock-timeout", "--statement-timeout"}, shared)
}

// complete runs the completion script in shell with the words typed so far
// (the last one being completed) and returns what it offers.
func complete(t *testing.T, shell, script string, env []string, words ...string) []string {
	t.Helper()
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = "'" + w + "'"
	}
	prelude := ""
	if shell == "zsh" {
		// What zsh does when the user presses tab: compinit loaded, and
		// bashcompinit calls the function with bash's array indexing.
		prelude = "autoload -U compinit && compinit -u -D\n"
		script += "\nsetopt ksharrays\n"
	}
	test := prelude + script + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + ")\nCOMP_CWORD=" +
		strconv.Itoa(len(words)-1) + "\n_enqueue\nfor w in \"${COMPREPLY[@]}\"; do echo \"$w\"; done\n"
	args := []string{"-c", test}
	if shell == "zsh" {
		args = []string{"-f", "-c", test}
	}
	cmd := exec.Command(shell, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	require.NoError(t, cmd.Run(), "%s: %s", shell, errOut.String())
	require.Empty(t, strings.TrimSpace(errOut.String()), "%s wrote to stderr", shell)
	offered := strings.Fields(out.String())
	if shell == "zsh" {
		// bashcompinit's compgen leaves the matching to zsh, which offers
		// only the candidates that start with the word typed.
		typed := words[len(words)-1]
		offered = slices.DeleteFunc(offered, func(w string) bool { return !strings.HasPrefix(w, typed) })
	}
	return offered
}

// Completion in bash and zsh: commands, each command's flags and the
// shared ones, and the versions of the backfill files where a command
// takes a VERSION, from --dir or $BACKFILL_DIR.
func TestCompletion_BashAndZsh(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeBackfill(t, dir, "20260101000000_first.sql", "x")
	writeBackfill(t, dir, "manual/20260102000000_second.sql", "x")
	other := t.TempDir()
	writeBackfill(t, other, "20270101000000_elsewhere.sql", "x")
	for _, shell := range []string{"bash", "zsh"} {
		t.Run(shell, func(t *testing.T) {
			if _, err := exec.LookPath(shell); err != nil {
				t.Fatalf("%s is not installed (.ci/run installs it)", shell)
			}
			var out bytes.Buffer
			require.NoError(t, completion(&out, []string{shell}))
			script := out.String()
			env := []string{"BACKFILL_DIR=" + dir}

			require.Equal(t, []string{"status"}, complete(t, shell, script, env, "enqueue", "st"))
			require.Equal(t, []string{"verify"}, complete(t, shell, script, env, "enqueue", "ve"))
			require.Equal(t, []string{"--json"}, complete(t, shell, script, env, "enqueue", "status", "--js"))
			require.Equal(t, []string{"--copy-column", "--copy-table"}, complete(t, shell, script, env, "enqueue", "new", "x", "--copy-"))
			require.Equal(t, []string{"--dir"}, complete(t, shell, script, env, "enqueue", "--di"), "shared flags before the command")
			require.Equal(t, []string{"20260101000000", "20260102000000"}, complete(t, shell, script, env, "enqueue", "run", ""))
			require.Equal(t, []string{"20260102000000"}, complete(t, shell, script, env, "enqueue", "verify", "202601020"))
			require.Equal(t, []string{"20270101000000"}, complete(t, shell, script, env, "enqueue", "--dir", other, "wait", ""), "--dir wins")
			require.Equal(t, []string{"zsh"}, complete(t, shell, script, env, "enqueue", "completion", "z"))
			require.Empty(t, complete(t, shell, script, env, "enqueue", "pending", ""), "no VERSION to complete")
		})
	}
	err := completion(io.Discard, []string{"fish"})
	require.Equal(t, cli.ExitUsage, cli.ExitCode(err))
	var help bytes.Buffer
	require.NoError(t, completion(&help, []string{"-h"}))
	require.True(t, strings.HasPrefix(help.String(), "Usage: enqueue completion SHELL [flags]"), help.String())
}

// Shared flags may come before the command, and --version and help work.
func TestCLI_GlobalFlagsAndVersion(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeBackfill(t, dir, "20260101000000_first.sql", "-- table: t\n-- key: id\nUPDATE t SET x = 1 WHERE id BETWEEN @first AND @last;\n")
	out, _, err := runCLI(t, nil, "--dir", dir, "new", "second")
	require.NoError(t, err)
	require.Equal(t, dir, filepath.Dir(strings.TrimSpace(out)), "--dir before the command is the command's")
	out, _, err = runCLI(t, nil, "--version")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(out, "enqueue "), out)
	require.Contains(t, out, "(go1.")
	_, _, err = runCLI(t, nil, "--dir", dir)
	require.ErrorContains(t, err, "a command is required after the flags")
	_, _, err = runCLI(t, nil, "--json", "status")
	require.Equal(t, cli.ExitUsage, cli.ExitCode(err))
	require.ErrorContains(t, err, "before the command, only the shared flags")
	out, _, err = runCLI(t, nil, "help", "verify")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(out, "Usage: enqueue verify VERSION [flags]"), out)
	require.NotContains(t, out, "throttle", "one command's usage only")
}
