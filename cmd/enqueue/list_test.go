package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/internal/cli"
	"github.com/backfill/backfill/internal/testdb"
)

// listJSON runs "list --json" and decodes it, numbers kept as json.Number.
func listJSON(t *testing.T, env map[string]string) []map[string]any {
	t.Helper()
	out, _, err := runCLI(t, env, "list", "--json")
	require.NoError(t, err)
	dec := json.NewDecoder(strings.NewReader(out))
	dec.UseNumber()
	var list []map[string]any
	require.NoError(t, dec.Decode(&list), out)
	require.NotNil(t, list, "list --json prints an array: %q", out)
	return list
}

// byVersion indexes list entries by their version.
func byVersion(t *testing.T, list []map[string]any) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, e := range list {
		v, ok := e["version"].(json.Number)
		require.True(t, ok, "version is a number, got %T", e["version"])
		out[v.String()] = e
	}
	return out
}

func TestList(t *testing.T) {
	t.Parallel()
	url, pool := testdb.New(t)
	testdb.Exec(t, pool, `
CREATE TABLE orders (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO orders (id) SELECT g FROM generate_series(1, 2000) g;
ANALYZE orders;`)
	dir := t.TempDir()
	env := map[string]string{"DATABASE_URL": url, "BACKFILL_DIR": dir}

	// Only the Go backfill at first: an array of one.
	list := listJSON(t, env)
	require.Len(t, list, 1)
	require.Equal(t, map[string]any{
		"version": json.Number("20260301120200"), "name": "feature_flags_to_redis", "mode": "manual", "source": "go",
		"revertible": false, "state": nil, "drifted": false,
	}, list[0])

	const (
		up    = "UPDATE orders SET n = n + 1 WHERE id BETWEEN @first AND @last;\n"
		down  = "-- down\nUPDATE orders SET n = n - 1 WHERE id BETWEEN @first AND @last;\n"
		head  = "-- table: orders\n-- key: id\n"
		later = "20260401000000"
	)
	writeBackfill(t, dir, "20260101000001_with_down.sql", head+up+down)
	writeBackfill(t, dir, "manual/20260101000002_manual_one.sql", head+up)
	writeBackfill(t, dir, "20260101000003_auto_two.sql", head+up)
	writeBackfill(t, dir, "manual/"+later+"_after_go.sql", head+up)
	path1 := filepath.Join(dir, "20260101000001_with_down.sql")

	list = listJSON(t, env)
	var versions []string
	for _, e := range list {
		versions = append(versions, e["version"].(json.Number).String())
		keys := make([]string, 0, len(e))
		for k := range e {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		require.Equal(t, []string{"drifted", "mode", "name", "revertible", "source", "state", "version"}, keys)
		require.Nil(t, e["state"], "nothing enqueued yet")
		require.Equal(t, false, e["drifted"])
	}
	require.Equal(t, []string{"20260101000001", "20260101000002", "20260101000003", "20260301120200", later}, versions,
		"files and Go backfills in version order")
	got := byVersion(t, list)
	require.Equal(t, "with_down", got["20260101000001"]["name"])
	require.Equal(t, "auto", got["20260101000001"]["mode"])
	require.Equal(t, path1, got["20260101000001"]["source"])
	require.Equal(t, true, got["20260101000001"]["revertible"])
	require.Equal(t, "manual", got["20260101000002"]["mode"])
	require.Equal(t, filepath.Join(dir, "manual", "20260101000002_manual_one.sql"), got["20260101000002"]["source"])
	require.Equal(t, false, got["20260101000002"]["revertible"])
	require.Equal(t, "go", got["20260301120200"]["source"])

	// Enqueue the automatic ones and one manual one; finish the first and
	// revert it; then change its file.
	_, _, err := runCLI(t, env, "pending")
	require.NoError(t, err)
	_, _, err = runCLI(t, env, "run", "20260101000002")
	require.NoError(t, err)
	testdb.Exec(t, pool, `UPDATE backfill_runs SET state = 'completed', finished_at = now() WHERE version = 20260101000001`)
	_, _, err = runCLI(t, env, "revert", "20260101000001")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path1, []byte("-- changed after it was enqueued\n"+head+up+down), 0o644))

	got = byVersion(t, listJSON(t, env))
	require.Equal(t, "pending", got["20260101000001"]["state"], "the state of the latest run (the revert)")
	require.Equal(t, true, got["20260101000001"]["drifted"])
	require.Equal(t, "pending", got["20260101000002"]["state"])
	require.Equal(t, false, got["20260101000002"]["drifted"])
	require.Equal(t, "pending", got["20260101000003"]["state"])
	require.Nil(t, got["20260301120200"]["state"])
	require.Nil(t, got[later]["state"])

	// The table.
	out, _, err := runCLI(t, env, "list")
	require.NoError(t, err)
	t.Logf("list:\n%s", out)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 6)
	require.Regexp(t, `^VERSION\s+NAME\s+MODE\s+SOURCE\s+DOWN\s+STATE\s+DRIFT$`, lines[0])
	row := func(version string) string {
		for _, l := range lines[1:] {
			if strings.HasPrefix(l, version+" ") {
				return l
			}
		}
		t.Fatalf("no row for %s in\n%s", version, out)
		return ""
	}
	require.Regexp(t, `^20260101000001\s+with_down\s+auto\s+file\s+yes\s+pending \(run 2, revert\)\s+changed$`, row("20260101000001"))
	require.Regexp(t, `^20260101000002\s+manual_one\s+manual\s+file\s+no\s+pending \(run 1\)\s+-$`, row("20260101000002"))
	for _, l := range lines {
		require.LessOrEqual(t, len(l), statusWidth, "list fits the terminal, whatever --dir is: %q", l)
	}
	require.Regexp(t, `^20260301120200\s+feature_flags_to_redis\s+manual\s+go\s+no\s+not enqueued\s+-$`, row("20260301120200"))
}

func TestList_BadInput(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": noDatabase, "BACKFILL_DIR": t.TempDir()}
	_, _, err := runCLI(t, env, "list", "20260101000001")
	require.Error(t, err)
	require.Equal(t, cli.ExitUsage, cli.ExitCode(err))
	require.Contains(t, err.Error(), "takes no arguments")

	// No database: a one-line error, exit 1.
	_, _, err = runCLI(t, env, "list")
	require.Error(t, err)
	require.Equal(t, 1, cli.ExitCode(err))
	require.Contains(t, err.Error(), "connecting to")
}
