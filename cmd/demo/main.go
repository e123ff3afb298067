// Command demo creates the demo data set that the seed backfills work on, and
// checks it afterwards. scripts/demo runs the whole demo; run "demo help" for
// the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/backfill/backfill/internal/cli"
	"github.com/backfill/backfill/internal/demo"
	"github.com/backfill/backfill/jobs"
)

const usage = `Usage: demo COMMAND [flags]

Commands:
  setup      drop and recreate the schema ` + demo.Schema + ` with users, orders and feature_flags
      --users N    users, about 90% of them 'enabled' (default 100000)
      --orders N   orders without a price in euros (default 1000000)
      --flags N    feature flags, the 3 seed flags included (default 3)
      --if-missing leave an existing demo schema (and its runs) alone
  verify     check that the seed backfills did their work; exit 1 if not

Flags (flag, then environment, then default):
  --database-url URL   PostgreSQL (DATABASE_URL; default ` + cli.DatabaseURLDefault + `)
  --redis-url URL      Redis; when set, verify checks the flags there too (REDIS_URL)

The backfill commands must run with PGOPTIONS='-c search_path=` + demo.Schema + `' so
that they find the demo's tables, and BACKFILL_SCHEMA=` + demo.Schema + ` so that their
own tables go there too; scripts/demo does that.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	cli.Report(os.Stderr, "demo", err, `run "demo help"`)
	os.Exit(cli.ExitCode(err))
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return cli.Usagef("a command is required")
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	name, args := args[0], args[1:]
	fs := flag.NewFlagSet("demo "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stdout, usage) }
	var s cli.Settings
	s.Bind(fs, getenv, false)
	sizes := demo.DefaultSizes()
	var do func(context.Context) error
	switch name {
	case "setup":
		fs.IntVar(&sizes.Users, "users", sizes.Users, "number of users")
		fs.IntVar(&sizes.Orders, "orders", sizes.Orders, "number of orders")
		fs.IntVar(&sizes.Flags, "flags", sizes.Flags, "number of feature flags")
		ifMissing := fs.Bool("if-missing", false, "leave an existing demo schema alone")
		do = func(ctx context.Context) error { return setup(ctx, &s, sizes, *ifMissing, stdout) }
	case "verify":
		do = func(ctx context.Context) error { return verify(ctx, &s, stdout) }
	default:
		return cli.Usagef("unknown command %q", name)
	}
	rest, err := cli.ParseArgs(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return cli.Usagef("%s: %v", name, err)
	}
	if len(rest) > 0 {
		return cli.Usagef("%s takes no arguments, got %q", name, rest[0])
	}
	if err := sizes.Validate(); err != nil {
		return cli.Usagef("%s: %v", name, err)
	}
	return do(ctx)
}

func setup(ctx context.Context, s *cli.Settings, sizes demo.Sizes, ifMissing bool, stdout io.Writer) error {
	pool, err := s.OpenPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	if ifMissing {
		var exists bool
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, demo.Schema).Scan(&exists); err != nil {
			return err
		}
		if exists {
			fmt.Fprintf(stdout, "schema %s exists: left as it is\n", demo.Schema)
			return nil
		}
	}
	started := time.Now()
	if err := demo.ResetSchema(ctx, pool, demo.Schema); err != nil {
		return err
	}
	if err := demo.Setup(ctx, pool, demo.Schema, sizes); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "schema %s recreated in %s: %d users (every tenth 'disabled', the rest 'enabled'), %d orders, %d feature flags\n",
		demo.Schema, time.Since(started).Round(time.Millisecond), sizes.Users, sizes.Orders, sizes.Flags)
	return nil
}

func verify(ctx context.Context, s *cli.Settings, stdout io.Writer) error {
	pool, err := s.OpenPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	rdb, err := s.OpenRedis(ctx)
	if err != nil {
		return err
	}
	if rdb != nil {
		defer rdb.Close()
	}
	r, err := demo.Verify(ctx, pool, demo.VerifyOptions{Schema: demo.Schema, Redis: rdb, RedisKey: jobs.FeatureFlagsKey})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ok: users: %d active, %d disabled, none enabled\n", r.UsersActive, r.UsersDisabled)
	fmt.Fprintf(stdout, "ok: orders: all %d have price_eur_cents = price_cents * 92 / 100\n", r.Orders)
	if r.FlagsChecked {
		fmt.Fprintf(stdout, "ok: feature flags: all %d are in the Redis hash %s\n", r.Flags, jobs.FeatureFlagsKey)
	} else {
		fmt.Fprintf(stdout, "skipped: feature flags in Redis (no REDIS_URL)\n")
	}
	return nil
}
