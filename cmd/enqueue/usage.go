package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/backfill/backfill/internal/cli"
)

const usage = `Usage: enqueue [shared flags] COMMAND [flags] [args]
("enqueue help COMMAND" shows one command; "enqueue --version" the build)

Commands:
  migrate              install or upgrade River's schema and the version table
      --status         list the schema migrations: applied (when, checksum) or not
  pending              enqueue every automatic backfill never enqueued before
  run VERSION          enqueue a manual backfill (or an automatic one not yet enqueued)
      --again          run a version again after a completed or cancelled run
      --dry-run        plan the run and run its first batch in a transaction that is
                       rolled back; print what it did and an ETA (records nothing)
  retry VERSION        resume the failed batches of VERSION's latest run from their checkpoints
  revert VERSION       run VERSION's down statement over the same key space
  pause VERSION        pause the latest run across all workers; checkpoints are kept
  resume VERSION       continue a paused run from its checkpoints
  cancel VERSION       stop the latest run for good (run --again starts a new one)
  throttle VERSION     change the latest unfinished run's pace across all workers within
                       about a second; recorded with its time and who did it
      --rate N         rows per second for the whole pool (0: unlimited)
      --duty-cycle P   share of time the run's batches may keep the database busy,
                       across the pool, such as 50%, or off (a file's default: 20%)
      --batch N        rows per batch
      --batch-time D   the duration batches aim at, their size adapting (0 or off: a fixed size)
      --max-replica-lag D|off  --max-active-backends N|off  --max-transaction-age D|off
      --throttle-query SQL  --hold-during-vacuum BOOL
                       the health signals that hold the run back (see the README)
  wait VERSION...      block until every named run completed: exit 0; failed or
                       cancelled: exit 1; timeout: exit 2
      --timeout D      give up after D (e.g. 30m); default: wait for ever
      --progress-every D  how often to print progress (default 5s)
  verify VERSION       check every row of the backfill's table against its verify condition
                       (or: not selected by its where condition), at its run's pace; print
                       the count and first keys of rows that disagree: exit 1 when any does
      --batch N        rows per read-only batch (default: the backfill's batch)
      --progress-every D  how often to print progress (default 5s)
  status [VERSION]     show runs: state, progress bar, rows/s, ETA, failures, what holds them back
      --json           print a JSON array instead of a table
      --watch          redraw the table until every run shown is finished
      --interval D     how often --watch redraws (default 1s)
  doctor               check connectivity, the schema, live workers, River's queue, partitions
                       owned by dead jobs, leaked locks, a pooler in between and what the
                       batches wait on; say what to do for each finding; exit 1 when a check fails
      --json           print a JSON array of findings instead
      --idle-limit D   how long a backfill session may sit idle in a transaction (default 1m)
      --look D         how long to look at what the batches wait on (default 1s; 0: do not look)
  list                 every backfill (files and Go): mode, source, down step, state, drift
      --json           print a JSON array instead of a table
  completion SHELL     print a completion script for bash or zsh:
                       source <(enqueue completion bash)
  new NAME             write DIR/<UTC timestamp>_NAME.sql, a commented template to edit
      --manual         write it to DIR/manual (enqueued only by "run")
      --copy-column TABLE.OLD:NEW  instead, the expand/contract kit of a column rename
                       or type change, read from the database: the backfill, and
                       <version>_NAME.expand.sql and .contract.sql
      --type TYPE      the new column's type (default: the old column's)
      --copy-table OLD:NEW  the same for a table rename: NEW like OLD, triggers that
                       mirror writes both ways, the copy, then OLD dropped
      --sql-dir DIR    where the expand and contract SQL go (default .)

Shared flags (flag, then environment, then default):
  --database-url URL   PostgreSQL (DATABASE_URL; default ` + cli.DatabaseURLDefault + `)
  --redis-url URL      Redis, for Go backfills that need it (REDIS_URL)
  --dir DIR            backfill files (BACKFILL_DIR; default ` + cli.BackfillDirDefault + `)
  --schema NAME        schema of the version table and River's tables (BACKFILL_SCHEMA;
                       default backfill)
  --lock-timeout D     longest any step waits for a lock before it gives up, with nothing
                       recorded (default 5s)
  --statement-timeout D  longest any one statement may run (default 1m)

Examples:
  enqueue migrate && enqueue pending
  enqueue run 20260301120200
  enqueue new fill_prices --manual
  enqueue new rename_price --copy-column orders.price:price_cents --type bigint --sql-dir db/migrations
  enqueue run 20260301120100 --dry-run
  enqueue status --json
  enqueue retry 20260301120100
  enqueue throttle 20260301120100 --rate 2000
  enqueue wait 20260301120000 20260301120100 --timeout 30m && deploy-the-next-step
  enqueue wait 20260301120100 && enqueue verify 20260301120100 && deploy-the-contract-step
`

// help is "enqueue help [COMMAND]": the whole usage, or one command's.
func help(w io.Writer, args []string) error {
	switch {
	case len(args) == 0:
		fmt.Fprint(w, usage)
	case len(args) > 1:
		return cli.Usagef("help takes at most one COMMAND, got %d", len(args))
	case commandUsage(args[0]) == "":
		return cli.Usagef("help: unknown command %q", args[0])
	default:
		fmt.Fprint(w, commandUsage(args[0]))
	}
	return nil
}

// helpHint is the line printed under a usage error: where to read how the
// command is used (the whole usage when there is no such command).
func helpHint(args []string) string {
	if len(args) > 0 && commandUsage(args[0]) != "" {
		return `run "enqueue help ` + args[0] + `"`
	}
	return `run "enqueue help"`
}

// commandUsage is one command's part of usage: its lines under "Commands:"
// (the command and its flags), then the shared flags; "" when there is no
// such command. One text keeps the overview and the parts in step.
func commandUsage(name string) string {
	commands := usage[strings.Index(usage, "Commands:\n")+len("Commands:\n") : strings.Index(usage, "\nShared flags")]
	shared := usage[strings.Index(usage, "Shared flags"):strings.Index(usage, "\nExamples:")]
	lines := strings.Split(commands, "\n")
	for i, l := range lines {
		// A command's line: "  run VERSION          enqueue ..."; deeper
		// indented lines are its flags and wrapped text.
		if fields := strings.Fields(l); len(fields) == 0 || fields[0] != name || strings.HasPrefix(l, "   ") {
			continue
		}
		synopsis, _, _ := strings.Cut(strings.TrimSpace(l), "  ")
		end := i + 1
		for end < len(lines) && strings.HasPrefix(lines[end], "   ") {
			end++
		}
		return "Usage: enqueue " + synopsis + " [flags]\n\n" + strings.Join(lines[i:end], "\n") + "\n\n" + shared
	}
	return ""
}
