// Command enqueue records backfills in the version table and queues their
// batches for the workers. Run "enqueue help" for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/cli"
	"github.com/backfill/backfill/jobs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	cli.Report(os.Stderr, "enqueue", err, helpHint(os.Args[1:]))
	os.Exit(cli.ExitCode(err))
}

// command is what every subcommand gets.
type command struct {
	settings cli.Settings
	timeouts batches.Timeouts // of every transaction
	stdout   io.Writer
	stderr   io.Writer
	args     []string // positional arguments
	// width is the terminal's (see terminalWidth): status keeps within it.
	width int
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	// What this command does to runs is recorded as done by user@host.
	ctx = batches.WithActor(ctx, batches.ActorOf(ctx, cli.Actor()))
	args, err := commandFirst(args, getenv)
	if err != nil {
		return err
	}
	switch {
	case len(args) == 0:
		return cli.Usagef("a command is required")
	case args[0] == "help":
		return help(stdout, args[1:])
	case args[0] == "-h" || args[0] == "-help" || args[0] == "--help":
		return help(stdout, nil)
	case args[0] == "--version" || args[0] == "-version" || args[0] == "version":
		fmt.Fprintln(stdout, cli.Version("enqueue"))
		return nil
	case args[0] == "completion":
		return completion(stdout, args[1:])
	}
	name, args := args[0], args[1:]
	c, fs, do, err := newCommand(name, getenv, stdout, stderr)
	if err != nil {
		return err
	}
	if c.args, err = cli.ParseArgs(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return cli.Usagef("%s: %v", name, err)
	}
	if c.timeouts.Lock < 10*time.Millisecond || c.timeouts.Statement < 10*time.Millisecond {
		return cli.Usagef("%s: --lock-timeout and --statement-timeout must be at least 10ms, got %s and %s", name, c.timeouts.Lock, c.timeouts.Statement)
	}
	return explainTimeout(do(ctx), c.timeouts)
}

// newCommand is command name with its flags, and what it does once they
// are parsed.
func newCommand(name string, getenv func(string) string, stdout, stderr io.Writer) (*command, *flag.FlagSet, func(context.Context) error, error) {
	fs := flag.NewFlagSet("enqueue "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stdout, commandUsage(name)) }
	c := &command{stdout: stdout, stderr: stderr, width: terminalWidth(stdout, getenv)}
	c.settings.Bind(fs, getenv, true)
	fs.DurationVar(&c.timeouts.Lock, "lock-timeout", jobs.EnqueueLockTimeoutDefault, "longest a step waits for a lock")
	fs.DurationVar(&c.timeouts.Statement, "statement-timeout", jobs.EnqueueStatementTimeoutDefault, "longest one statement may run")

	var do func(context.Context) error
	switch name {
	case "migrate":
		status := fs.Bool("status", false, "list the schema migrations and whether each is applied")
		do = func(ctx context.Context) error { return c.migrate(ctx, *status) }
	case "pending":
		do = c.pending
	case "run":
		again := fs.Bool("again", false, "run a version again after a completed or cancelled run")
		dryRun := fs.Bool("dry-run", false, "run the first batch in a transaction that is rolled back")
		do = func(ctx context.Context) error {
			if *dryRun {
				return c.dryRun(ctx) // --again changes nothing: a dry run records no run
			}
			return c.runVersion(ctx, *again)
		}
	case "retry":
		do = c.retry
	case "pause":
		do = func(ctx context.Context) error { return c.control(ctx, name, (*jobs.Enqueuer).Pause, "paused") }
	case "resume":
		do = func(ctx context.Context) error { return c.control(ctx, name, (*jobs.Enqueuer).Resume, "resumed") }
	case "cancel":
		do = func(ctx context.Context) error { return c.control(ctx, name, (*jobs.Enqueuer).Cancel, "cancelled") }
	case "throttle":
		change := bindThrottle(fs)
		do = func(ctx context.Context) error { return c.throttle(ctx, *change) }
	case "wait":
		timeout := fs.Duration("timeout", 0, "give up after this long (exit 2); 0 waits for ever")
		every := fs.Duration("progress-every", waitProgressDefault, "how often to print progress")
		do = func(ctx context.Context) error { return c.wait(ctx, *timeout, *every) }
	case "verify":
		every := fs.Duration("progress-every", waitProgressDefault, "how often to print progress")
		batch := fs.Int("batch", 0, "rows per batch (default: the backfill's batch)")
		do = func(ctx context.Context) error { return c.verify(ctx, *every, *batch) }
	case "revert":
		do = c.revert
	case "status":
		asJSON := fs.Bool("json", false, "print JSON")
		watch := fs.Bool("watch", false, "redraw the table until every run shown is finished")
		interval := fs.Duration("interval", statusIntervalDefault, "how often --watch redraws")
		do = func(ctx context.Context) error {
			return c.status(ctx, statusOptions{asJSON: *asJSON, watch: *watch, interval: *interval})
		}
	case "doctor":
		asJSON := fs.Bool("json", false, "print JSON")
		idleLimit := fs.Duration("idle-limit", time.Minute, "how long a backfill session may sit idle in a transaction")
		look := fs.Duration("look", time.Second, "how long to look at what the batches wait on (0: do not look)")
		do = func(ctx context.Context) error { return c.doctor(ctx, *asJSON, *idleLimit, *look) }
	case "list":
		asJSON := fs.Bool("json", false, "print JSON")
		do = func(ctx context.Context) error { return c.list(ctx, *asJSON) }
	case "new":
		var opts newOptions
		fs.BoolVar(&opts.manual, "manual", false, "write a manual backfill (DIR/manual)")
		fs.StringVar(&opts.copyColumn, "copy-column", "", "TABLE.OLD:NEW: write the expand/contract kit of a column copy")
		fs.StringVar(&opts.copyTable, "copy-table", "", "OLD:NEW: write the expand/contract kit of a table copy")
		fs.StringVar(&opts.newType, "type", "", "the copy's type (default: the old column's)")
		fs.StringVar(&opts.sqlDir, "sql-dir", ".", "where the expand and contract SQL files go")
		do = func(ctx context.Context) error { return c.newBackfill(ctx, opts) }
	default:
		return nil, nil, nil, cli.Usagef("unknown command %q", name)
	}
	return c, fs, do, nil
}

// commandFirst moves the shared flags given before the command after it,
// so that "enqueue --dir X status" works as "enqueue status --dir X" does:
// every command takes them.
func commandFirst(args []string, getenv func(string) string) ([]string, error) {
	if len(args) == 0 || !strings.HasPrefix(args[0], "-") {
		return args, nil
	}
	switch args[0] {
	case "-h", "-help", "--help", "-version", "--version":
		return args, nil
	}
	fs := flag.NewFlagSet("enqueue", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var (
		settings cli.Settings
		timeouts batches.Timeouts
	)
	settings.Bind(fs, getenv, true)
	fs.DurationVar(&timeouts.Lock, "lock-timeout", 0, "")
	fs.DurationVar(&timeouts.Statement, "statement-timeout", 0, "")
	if err := fs.Parse(args); err != nil {
		return nil, cli.Usagef("%v (before the command, only the shared flags: run \"enqueue help\")", err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return nil, cli.Usagef("a command is required after the flags")
	}
	global := args[:len(args)-len(rest)]
	return append(append([]string{rest[0]}, global...), rest[1:]...), nil
}

// explainTimeout says which bound a step ran into, and that nothing was
// recorded (every step is one transaction, rolled back on error).
func explainTimeout(err error, t batches.Timeouts) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch pgErr.Code {
	case "55P03": // lock_not_available
		return fmt.Errorf("%w; gave up after --lock-timeout %s waiting for a lock another session holds, and recorded nothing: try again when it is released, or raise --lock-timeout", err, t.Lock)
	case "57014": // query_canceled (statement_timeout)
		return fmt.Errorf("%w; a statement ran longer than --statement-timeout %s, and nothing was recorded: raise --statement-timeout", err, t.Statement)
	}
	return err
}

// version parses the single VERSION argument.
func (c *command) version(cmd string) (int64, error) {
	if len(c.args) != 1 {
		return 0, cli.Usagef("%s takes one VERSION argument, got %d", cmd, len(c.args))
	}
	v, err := strconv.ParseInt(c.args[0], 10, 64)
	if err != nil || v < 1 {
		return 0, cli.Usagef("%s: VERSION must be a positive integer, got %q", cmd, c.args[0])
	}
	return v, nil
}

func (c *command) noArgs(cmd string) error {
	if len(c.args) > 0 {
		return cli.Usagef("%s takes no arguments, got %q", cmd, c.args[0])
	}
	return nil
}

// read runs fn's queries in a read transaction bounded by --lock-timeout and
// --statement-timeout, so that status, list and wait never hang behind a
// lock (a migration in progress, say).
func (c *command) read(ctx context.Context, pool *pgxpool.Pool, fn func(q batches.Querier) error) error {
	return explainTimeout(c.timeouts.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return fn(tx) }), c.timeouts)
}

// open loads the definitions and connects; the caller closes the pool.
func (c *command) open(ctx context.Context) (*pgxpool.Pool, *jobs.Enqueuer, *batches.Registry, error) {
	reg, err := jobs.NewRegistry(c.settings.Dir, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	pool, err := c.settings.OpenPool(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	// A binary never works on a schema it was not built for.
	if err := batches.CheckSchema(ctx, pool); err != nil {
		pool.Close()
		return nil, nil, nil, err
	}
	enq, err := jobs.NewEnqueuer(pool, reg, cli.Hostname())
	if err != nil {
		pool.Close()
		return nil, nil, nil, err
	}
	enq.SetTimeouts(c.timeouts)
	return pool, enq, reg, nil
}
