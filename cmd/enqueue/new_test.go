package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/cli"
	"github.com/backfill/backfill/internal/testdb"
	"github.com/backfill/backfill/jobs"
)

// noDatabase is a connection string nothing answers: "new" must not need one.
const noDatabase = "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"

// newFile runs "enqueue new" and returns the path it printed.
func newFile(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, _, err := runCLI(t, map[string]string{"DATABASE_URL": noDatabase, "BACKFILL_DIR": dir}, append([]string{"new"}, args...)...)
	require.NoError(t, err)
	path := strings.TrimSuffix(out, "\n")
	require.NotContains(t, path, "\n", "new prints the path and nothing else: %q", out)
	return path
}

func versionStamp(t time.Time) int64 {
	v, err := strconv.ParseInt(t.UTC().Format(versionLayout), 10, 64)
	if err != nil {
		panic(err)
	}
	return v
}

func TestNew_WritesATemplateThatParses(t *testing.T) {
	t.Parallel()
	for _, manual := range []bool{false, true} {
		t.Run(map[bool]string{false: "auto", true: "manual"}[manual], func(t *testing.T) {
			t.Parallel()
			// Folders that do not exist yet are created.
			dir := filepath.Join(t.TempDir(), "deep", "backfills")
			args := []string{"fill_prices_v2"}
			wantDir, mode := dir, batches.ModeAuto
			if manual {
				args = append(args, "--manual")
				wantDir, mode = filepath.Join(dir, "manual"), batches.ModeManual
			}
			before := versionStamp(time.Now())
			path := newFile(t, dir, args...)
			after := versionStamp(time.Now())

			require.Equal(t, wantDir, filepath.Dir(path))
			m := regexp.MustCompile(`^([0-9]{14})_fill_prices_v2\.sql$`).FindStringSubmatch(filepath.Base(path))
			require.NotNil(t, m, "file name %q", path)
			version, err := strconv.ParseInt(m[1], 10, 64)
			require.NoError(t, err)
			require.GreaterOrEqual(t, version, before, "the version is the UTC time of now")
			require.LessOrEqual(t, version, after)
			_, err = time.Parse(versionLayout, m[1])
			require.NoError(t, err, "the version is a timestamp")

			def, err := batches.ParseFile(path, mode)
			require.NoError(t, err, "the template must parse as written")
			require.Equal(t, version, def.Version)
			require.Equal(t, "fill_prices_v2", def.Name)
			require.Equal(t, batches.Options{Table: "CHANGE_ME", Key: "id"}.WithDefaults(), def.Options,
				"the template's settings are the defaults, optional conditions off")
			require.Equal(t, batches.Options{Table: "CHANGE_ME", Key: "id", BatchSize: 1000, BatchTime: 200 * time.Millisecond,
				DutyCycle: 0.2, Partitions: 8, MaxAttempts: 5}, def.Options, "the defaults the template's comments name")
			require.Nil(t, def.Down, "the down section is off until switched on")
			require.Contains(t, def.UpSQL, "CHANGE_ME")

			// The whole directory loads too (what pending and status read).
			defs, err := batches.LoadDir(dir)
			require.NoError(t, err)
			require.Len(t, defs, 1)

			content, err := os.ReadFile(path)
			require.NoError(t, err)
			text := string(content)
			for _, key := range []string{"table", "key", "rate", "partitions", "attempts"} {
				require.Regexp(t, `(?m)^-- `+key+`: `, text, "key %s is in the template", key)
			}
			for _, key := range []string{"batch", "batch_time", "duty_cycle", "where", "down_where", "lock_timeout", "statement_timeout"} {
				require.Regexp(t, `(?m)^-- \(off\) `+key+`: `, text, "optional key %s is in the template, switched off", key)
			}
			require.Contains(t, text, "-- (off) down\n")
			require.Contains(t, text, `remove "(off) "`, "the template says how to switch optional parts on")
			for _, dflt := range []string{"(default 1000)", "(default 200ms", "(default 20%)", "(default 0)", "(default 8)", "(default 5)", "(default none)"} {
				require.Contains(t, text, dflt)
			}
			if manual {
				require.Contains(t, text, `only "enqueue run `+m[1]+`"`)
			} else {
				require.Contains(t, text, `"enqueue pending" enqueues it`)
			}
		})
	}
}

// Following the template's own instructions (remove "(off) ", uncomment the
// down statement) gives a file with where, down_where and a down step.
func TestNew_OptionalPartsSwitchOnAsDescribed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := newFile(t, dir, "with_revert")
	content, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(strings.ReplaceAll(string(content), "(off) ", ""), "\n")
	inDown := false
	for i, l := range lines {
		if l == "-- down" {
			inDown = true
			continue
		}
		if inDown {
			lines[i] = strings.TrimPrefix(l, "-- ")
		}
	}
	require.True(t, inDown)
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644))

	def, err := batches.ParseFile(path, batches.ModeAuto)
	require.NoError(t, err)
	require.Equal(t, "CHANGE_ME IS NULL", def.Options.Where)
	require.Equal(t, "CHANGE_ME IS NOT NULL", def.Options.DownWhere)
	require.Equal(t, 2*time.Second, def.Options.LockTimeout, "the worker's default, written out")
	require.Equal(t, 30*time.Second, def.Options.StatementTimeout)
	require.NotNil(t, def.Down)
	require.Contains(t, def.DownSQL, "SET CHANGE_ME = NULL")
	require.NotContains(t, def.UpSQL, "SET CHANGE_ME = NULL", "the down statement is no longer part of the up statement")
}

// Until its placeholders are replaced, pending (and a dry run) reject the
// file, naming the placeholder, and record nothing; once edited, it runs.
func TestNew_PendingRejectsTheTemplateUntilEdited(t *testing.T) {
	t.Parallel()
	url, pool := testdb.New(t)
	testdb.Exec(t, pool, `
CREATE TABLE orders (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO orders (id) SELECT g FROM generate_series(1, 100) g;
ANALYZE orders;`)
	dir := t.TempDir()
	env := map[string]string{"DATABASE_URL": url, "BACKFILL_DIR": dir}
	path := newFile(t, dir, "fill_orders")
	version := versionOf(path)

	for _, args := range [][]string{{"pending"}, {"run", version}, {"run", version, "--dry-run"}} {
		_, _, err := runCLI(t, env, args...)
		require.Error(t, err, "%v", args)
		require.Contains(t, err.Error(), "CHANGE_ME", "%v: the error names the placeholder", args)
		require.Equal(t, 1, cli.ExitCode(err))
	}
	var runs, jobsQueued int64
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM backfill_runs), (SELECT count(*) FROM river_job)`).Scan(&runs, &jobsQueued))
	require.Zero(t, runs)
	require.Zero(t, jobsQueued)

	content, err := os.ReadFile(path)
	require.NoError(t, err)
	edited := strings.Replace(string(content), "-- table: CHANGE_ME", "-- table: orders", 1)
	edited = strings.Replace(edited, "UPDATE CHANGE_ME\nSET CHANGE_ME = CHANGE_ME\n", "UPDATE orders\nSET n = n + 1\n", 1)
	require.NoError(t, os.WriteFile(path, []byte(edited), 0o644))

	out, _, err := runCLI(t, env, "run", version, "--dry-run")
	require.NoError(t, err)
	require.Contains(t, out, "rows affected")
	out, _, err = runCLI(t, env, "pending")
	require.NoError(t, err)
	require.Contains(t, out, "enqueued "+version+"_fill_orders run 1")
}

// A version is never taken twice: files in DIR and DIR/manual that have the
// current second (and the next ones) push the new file to the next free second,
// and nothing is overwritten.
func TestNew_NeverOverwritesAndSkipsTakenVersions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := time.Now().UTC().Truncate(time.Second)
	const taken = 30 // far more seconds than the test takes
	for i := range taken {
		name := strconv.FormatInt(versionStamp(start.Add(time.Duration(i)*time.Second)), 10) + "_other.sql"
		if i%2 == 1 {
			name = "manual/" + name // a version is taken whatever the folder
		}
		writeBackfill(t, dir, name, "-- table: t\n-- key: id\nUPDATE t SET x = 1 WHERE id BETWEEN @first AND @last;\n")
	}
	path := newFile(t, dir, "next")
	want := strconv.FormatInt(versionStamp(start.Add(taken*time.Second)), 10)
	require.Equal(t, filepath.Join(dir, want+"_next.sql"), path)

	// The same name twice in one second: two files, two versions.
	p1 := newFile(t, dir, "twice", "--manual")
	p2 := newFile(t, dir, "twice", "--manual")
	require.NotEqual(t, p1, p2)
	require.NotEqual(t, versionOf(p1), versionOf(p2))
	defs, err := batches.LoadDir(dir)
	require.NoError(t, err, "no version is used twice")
	require.Len(t, defs, taken+3)
	for _, d := range defs {
		if d.Name == "other" {
			require.Contains(t, d.UpSQL, "SET x = 1", "existing files are left alone")
		}
	}
}

// The versions of Go backfills are taken too.
func TestNew_SkipsTheVersionsOfGoBackfills(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	goVersion := (&jobs.FeatureFlagsToRedis{}).Version()
	at, err := time.Parse(versionLayout, strconv.FormatInt(goVersion, 10))
	require.NoError(t, err)
	path, err := createBackfillFile(dir, "flags_again", false, at, goVersions(), templateOf("flags_again"))
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, strconv.FormatInt(goVersion+1, 10)+"_flags_again.sql"), path)

	// Registered together with the Go backfills, the new file clashes with none.
	_, err = jobs.NewRegistry(dir, nil)
	require.NoError(t, err)

	// A timestamp at the end of a minute carries over to the next one.
	at = time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC)
	taken := map[int64]bool{20261231235959: true}
	path, err = createBackfillFile(dir, "new_year", false, at, taken, templateOf("new_year"))
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "20270101000000_new_year.sql"), path)
}

func TestNew_BadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{"DATABASE_URL": noDatabase, "BACKFILL_DIR": dir}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no name", []string{"new"}, "NAME"},
		{"two names", []string{"new", "a", "b"}, "got 2"},
		{"upper case", []string{"new", "FillPrices"}, `"FillPrices"`},
		{"dash", []string{"new", "fill-prices"}, `"fill-prices"`},
		{"leading underscore", []string{"new", "_fill"}, `"_fill"`},
		{"space", []string{"new", "fill prices"}, `"fill prices"`},
		{"dot sql", []string{"new", "fill.sql"}, `"fill.sql"`},
		{"path", []string{"new", "../fill"}, `"../fill"`},
		{"empty", []string{"new", ""}, `""`},
		{"not ascii", []string{"new", "prix_ü"}, `"prix_ü"`},
		{"unknown flag", []string{"new", "fill", "--force"}, "force"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, _, err := runCLI(t, env, tc.args...)
			require.Error(t, err)
			require.Equal(t, cli.ExitUsage, cli.ExitCode(err), "bad input is a usage error: %v", err)
			var ue *cli.UsageError
			require.True(t, errors.As(err, &ue), "%T %v", err, err)
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error(), "\n", "a one-line message")
			require.Empty(t, stdout)
		})
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "nothing was written")
}

// templateOf is the content function of an automatic template named name.
func templateOf(name string) func(int64) string {
	return func(version int64) string { return backfillTemplate(version, name, false) }
}
