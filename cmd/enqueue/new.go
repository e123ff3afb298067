package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/cli"
	"github.com/backfill/backfill/jobs"
)

// versionLayout is the UTC timestamp new files are versioned with.
const versionLayout = "20060102150405"

// newOptions are the flags of "enqueue new".
type newOptions struct {
	manual     bool
	copyColumn string // TABLE.OLD:NEW, for the expand/contract kit
	copyTable  string // OLD:NEW, the same for a table
	newType    string // the copy's type (--type)
	sqlDir     string // where the expand and contract files go
}

func (c *command) newBackfill(ctx context.Context, opts newOptions) error {
	if len(c.args) != 1 {
		return cli.Usagef("new takes one NAME argument, got %d", len(c.args))
	}
	name := c.args[0]
	if !batches.ValidName(name) {
		return cli.Usagef("new: NAME %q must be lower-case letters, digits and underscores, starting with a letter or digit", name)
	}
	switch {
	case opts.copyColumn != "" && opts.copyTable != "":
		return cli.Usagef("new: give --copy-column or --copy-table, not both")
	case opts.newType != "" && opts.copyColumn == "":
		return cli.Usagef("new: --type goes with --copy-column")
	}
	if opts.copyColumn == "" && opts.copyTable == "" {
		path, err := createBackfillFile(c.settings.Dir, name, opts.manual, time.Now(), goVersions(),
			func(version int64) string { return backfillTemplate(version, name, opts.manual) })
		if err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, path)
		fmt.Fprintln(c.stderr, "edit the CHANGE_ME placeholders, then try it with: enqueue run", versionOf(path), "--dry-run")
		return nil
	}
	return c.newKit(ctx, name, opts)
}

// kit is the three files of an expand/contract change.
type kit interface {
	expandSQL(version int64, name string) string
	backfillSQL(version int64, name string, manual bool) string
	contractSQL(version int64, name string) string
}

// readKit reads from the database what the kit of a column or table copy
// needs.
func readKit(ctx context.Context, q batches.Querier, opts newOptions) (kit, error) {
	if opts.copyTable != "" {
		old, newTable, err := parseCopyTable(opts.copyTable)
		if err != nil {
			return nil, err
		}
		return inspectCopyTable(ctx, q, old, newTable)
	}
	table, old, newCol, err := parseCopyColumn(opts.copyColumn)
	if err != nil {
		return nil, err
	}
	return inspectCopyColumn(ctx, q, table, old, newCol, opts.newType)
}

// newKit writes the three files of a column or table copy: the backfill,
// and its expand and contract SQL in opts.sqlDir.
func (c *command) newKit(ctx context.Context, name string, opts newOptions) error {
	// Bad flags fail before connecting.
	if opts.copyTable != "" {
		if _, _, err := parseCopyTable(opts.copyTable); err != nil {
			return err
		}
	} else if _, _, _, err := parseCopyColumn(opts.copyColumn); err != nil {
		return err
	}
	pool, err := c.settings.OpenPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	var cc kit
	if err := c.read(ctx, pool, func(q batches.Querier) (err error) {
		cc, err = readKit(ctx, q, opts)
		return err
	}); err != nil {
		return err
	}
	if err := os.MkdirAll(opts.sqlDir, 0o755); err != nil {
		return fmt.Errorf("new: creating --sql-dir: %w", err)
	}
	var expand, contract string
	path, err := createBackfillFile(c.settings.Dir, name, opts.manual, time.Now(), goVersions(), func(version int64) string {
		prefix := filepath.Join(opts.sqlDir, fmt.Sprintf("%d_%s", version, name))
		expand, contract = prefix+".expand.sql", prefix+".contract.sql"
		return cc.backfillSQL(version, name, opts.manual)
	})
	if err != nil {
		return err
	}
	version, _ := strconv.ParseInt(versionOf(path), 10, 64)
	for _, f := range []struct{ path, content string }{
		{expand, cc.expandSQL(version, name)}, {contract, cc.contractSQL(version, name)},
	} {
		if err := writeNewFile(f.path, f.content); err != nil {
			_ = os.Remove(path) // all three or none
			return err
		}
	}
	fmt.Fprintln(c.stdout, expand)
	fmt.Fprintln(c.stdout, path)
	fmt.Fprintln(c.stdout, contract)
	fmt.Fprintf(c.stderr, "review the three files: the expand SQL goes into your application's schema migration (deploy 1),\n"+
		"then \"enqueue run %d --dry-run\"; the contract SQL comes last, after \"enqueue wait %d && enqueue verify %d\"\n", version, version, version)
	return nil
}

// writeNewFile writes a file that must not exist yet.
func writeNewFile(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("new: %w", err)
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("new: writing %s: %w", path, err)
	}
	return nil
}

// goVersions are the versions of the Go backfills, which both binaries
// register next to the files.
func goVersions() map[int64]bool {
	taken := map[int64]bool{}
	for _, g := range jobs.GoBackfills(nil) {
		taken[g.Version()] = true
	}
	return taken
}

var leadingVersion = regexp.MustCompile(`^([0-9]+)_`)

// createBackfillFile writes the content of a new backfill to
// dir/<version>_<name>.sql (dir/manual/... when manual) and returns its path.
// The version is now as a UTC timestamp, or the next free second when a file
// in dir or dir/manual, or a version in taken, has it already. It never
// overwrites a file.
func createBackfillFile(dir, name string, manual bool, now time.Time, taken map[int64]bool, content func(version int64) string) (string, error) {
	for _, sub := range []string{dir, filepath.Join(dir, batches.ManualDir)} {
		entries, err := os.ReadDir(sub)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("reading backfill directory: %w", err)
		}
		for _, e := range entries {
			if m := leadingVersion.FindStringSubmatch(e.Name()); m != nil {
				if v, err := strconv.ParseInt(m[1], 10, 64); err == nil {
					taken[v] = true
				}
			}
		}
	}
	target := dir
	if manual {
		target = filepath.Join(dir, batches.ManualDir)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return "", fmt.Errorf("creating backfill directory: %w", err)
	}
	t := now.UTC().Truncate(time.Second)
	for {
		version, err := strconv.ParseInt(t.Format(versionLayout), 10, 64)
		if err != nil {
			return "", fmt.Errorf("version of %s: %w", t, err)
		}
		if taken[version] {
			t = t.Add(time.Second)
			continue
		}
		path := filepath.Join(target, fmt.Sprintf("%d_%s.sql", version, name))
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) { // created just now by someone else
			taken[version] = true
			continue
		}
		if err != nil {
			return "", fmt.Errorf("creating backfill file: %w", err)
		}
		_, err = f.WriteString(content(version))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", fmt.Errorf("writing %s: %w", path, err)
		}
		return path, nil
	}
}

func versionOf(path string) string {
	return strings.SplitN(filepath.Base(path), "_", 2)[0]
}

// backfillTemplate is a new backfill file: every header key with what it does
// and its default, a placeholder statement, and an optional revert. It parses
// as is; the CHANGE_ME placeholders make "pending" reject it until edited.
//
// Only settings may have the shape "-- word: value" (any such line is a
// header key, and unknown keys are errors); optional settings are switched
// off as "-- (off) key: value", which is a free comment.
func backfillTemplate(version int64, name string, manual bool) string {
	when := `-- It is automatic: "enqueue pending" enqueues it after the deploy (files in
-- the manual folder run only when asked for with "enqueue run VERSION").`
	if manual {
		when = fmt.Sprintf(`-- It is manual: only "enqueue run %d" enqueues it ("enqueue pending"
-- leaves files of the manual folder alone).`, version)
	}
	return fmt.Sprintf(`-- %[1]d_%[2]s
-- Say here what this backfill does and why.
--
%[3]s
-- Replace every CHANGE_ME, then try it with
-- "enqueue run %[1]d --dry-run".
--
-- Lines "-- key: value" are settings, and other comment lines free text.
-- A setting written "-- (off) key: value" is off; remove "(off) " to use it.
--
-- The table whose key space is walked, as name or schema.name (required).
-- table: CHANGE_ME
-- The column batches are cut on (required). It needs an index whose first
-- column it is, normally the primary key.
-- key: id
-- The pace. Left alone, a backfill is gentle with the live database: its
-- batches aim at 200ms each and keep the database busy at most 20%% of the
-- time across all workers. For a maintenance window, set duty_cycle: off.
-- "enqueue throttle" changes any of these while the run works.
--
-- The duration every batch aims at, 10ms to 1m, or off: the size adapts to
-- the cost of the rows, between batch_min and batch_max (default 200ms, or
-- off when batch is set; 10 and 100000).
-- (off) batch_time: 200ms
-- (off) batch_min: 10
-- (off) batch_max: 100000
-- Rows per batch, 1 to 1000000: a fixed size, or with batch_time the first
-- batch's (default 1000).
-- (off) batch: 1000
-- The share of time the run's batches may keep the database busy, summed
-- over all workers: 1%% to 10000%% (100%% is one connection always busy), or
-- off for no limit (default 20%%).
-- (off) duty_cycle: 20%%
-- The most rows per second for the whole run across all workers, 1 to
-- 1000000000, or 0 for no limit (default 0).
-- rate: 0
-- A SQL condition; only matching rows are cut into batches, so batches hold
-- only rows that still need work (default none).
-- (off) where: CHANGE_ME IS NULL
-- The same for the revert run (default none).
-- (off) down_where: CHANGE_ME IS NOT NULL
-- Key ranges worked in parallel, 1 to 1024 (default 8).
-- partitions: 8
-- Tries of a failing batch before it is recorded as failed, 1 to 100
-- (default 5).
-- attempts: 5
-- How long a batch waits for a row or table lock before it fails and is
-- tried again, 10ms to 10m (default: the worker's --lock-timeout, 2s).
-- (off) lock_timeout: 2s
-- The longest one batch's statement may run, 100ms to 1h (default: the
-- worker's --statement-timeout, 30s).
-- (off) statement_timeout: 30s

-- The statement runs once per batch, with the batch's first and last key
-- (both inclusive) bound to @first and @last; it must use both. Keep it
-- idempotent (for example "AND new_column IS NULL").
UPDATE CHANGE_ME
SET CHANGE_ME = CHANGE_ME
WHERE id BETWEEN @first AND @last;

-- Optional revert, run by "enqueue revert %[1]d" over the same
-- key space.
-- To use it, remove "(off) " from the next line and "-- " from the lines of
-- the statement after it, and make that statement undo the one above.
-- (off) down
-- UPDATE CHANGE_ME
-- SET CHANGE_ME = NULL
-- WHERE id BETWEEN @first AND @last;
`, version, name, when)
}
