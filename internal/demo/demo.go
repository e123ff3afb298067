// Package demo creates and checks the demo data set that the seed backfills
// of backfills/ work on: users whose status goes from 'enabled' to 'active',
// orders that get a price in euros, and feature flags copied to Redis.
//
// cmd/demo (run by scripts/demo) builds it in its own schema; the tests of
// package jobs build a smaller one in a test database.
package demo

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
)

// Schema is the schema the demo lives in. The demo's commands run with
// PGOPTIONS='-c search_path=backfill_demo' (for the demo's tables) and
// BACKFILL_SCHEMA=backfill_demo (River's tables and the version table), so
// dropping it resets everything.
const Schema = "backfill_demo"

// SeedFlags are the feature flags of the seed article, in id order.
var SeedFlags = []Flag{
	{Name: "2fa_sms", Enabled: true},
	{Name: "notifications_beta", Enabled: false},
	{Name: "pagination", Enabled: true},
}

// Flag is one row of feature_flags.
type Flag struct {
	Name    string
	Enabled bool
}

// Sizes are the demo's row counts.
type Sizes struct {
	Users  int
	Orders int
	// Flags is the number of feature flags: the SeedFlags, then generated
	// ones ("flag_0004", ..., "flag_10000", ...) up to this number.
	Flags int
}

// DefaultSizes are what "demo setup" creates without flags.
func DefaultSizes() Sizes { return Sizes{Users: 100_000, Orders: 1_000_000, Flags: len(SeedFlags)} }

// Validate reports sizes that Setup refuses.
func (s Sizes) Validate() error {
	switch {
	case s.Users < 0:
		return fmt.Errorf("users must not be negative, got %d", s.Users)
	case s.Orders < 0:
		return fmt.Errorf("orders must not be negative, got %d", s.Orders)
	case s.Orders > 0 && s.Users == 0:
		return fmt.Errorf("orders need users to belong to: %d orders, 0 users", s.Orders)
	case s.Flags < len(SeedFlags):
		return fmt.Errorf("flags must be at least %d (the seed flags), got %d", len(SeedFlags), s.Flags)
	}
	return nil
}

// DB is what Setup needs: a pool or a connection.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Querier is what Verify needs: a pool, a connection or a transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// ResetSchema drops schema with everything in it (the demo tables, and
// River's tables and the version table of an earlier demo) and creates it
// empty. It refuses "public", which holds more than the demo.
func ResetSchema(ctx context.Context, db DB, schema string) error {
	if schema == "" || schema == "public" {
		return fmt.Errorf("refusing to drop schema %q; the demo resets only a schema of its own", schema)
	}
	s := pgx.Identifier{schema}.Sanitize()
	if _, err := db.Exec(ctx, "DROP SCHEMA IF EXISTS "+s+" CASCADE"); err != nil {
		return fmt.Errorf("dropping schema %s: %w", schema, err)
	}
	if _, err := db.Exec(ctx, "CREATE SCHEMA "+s); err != nil {
		return fmt.Errorf("creating schema %s: %w", schema, err)
	}
	return nil
}

// Setup creates the tables users, orders and feature_flags in schema
// (created if missing), replacing them if they exist, fills them, and
// analyses them so that the planner's row estimates are right.
//
// About 90% of users are 'enabled' (every tenth is 'disabled'), orders have
// no price in euros yet, and the flags are SeedFlags plus generated ones.
func Setup(ctx context.Context, db DB, schema string, sizes Sizes) error {
	if schema == "" {
		return errors.New("schema is required")
	}
	if err := sizes.Validate(); err != nil {
		return fmt.Errorf("%w", err)
	}
	s := pgx.Identifier{schema}.Sanitize()
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		steps := []struct{ what, sql string }{
			{"creating schema", `CREATE SCHEMA IF NOT EXISTS ` + s},
			// Only this transaction's statements: the caller's session keeps
			// its search_path.
			{"setting search_path", `SET LOCAL search_path TO ` + s},
			{"dropping old tables", `DROP TABLE IF EXISTS users, orders, feature_flags CASCADE`},
			{"creating users", `CREATE TABLE users (
	id     bigint PRIMARY KEY,
	email  text   NOT NULL,
	status text   NOT NULL
)`},
			{"creating orders", `CREATE TABLE orders (
	id              bigint PRIMARY KEY,
	user_id         bigint NOT NULL,
	price_cents     bigint NOT NULL,
	price_eur_cents bigint
)`},
			{"creating feature_flags", `CREATE TABLE feature_flags (
	id      bigint  PRIMARY KEY,
	name    text    UNIQUE NOT NULL,
	enabled boolean NOT NULL
)`},
		}
		for _, st := range steps {
			if _, err := tx.Exec(ctx, st.sql); err != nil {
				return fmt.Errorf("%s: %w", st.what, err)
			}
		}
		if _, err := tx.Exec(ctx, `
INSERT INTO users (id, email, status)
SELECT g, 'user' || g || '@example.com', CASE WHEN g % 10 = 0 THEN 'disabled' ELSE 'enabled' END
FROM generate_series(1, $1::bigint) g`, sizes.Users); err != nil {
			return fmt.Errorf("filling users: %w", err)
		}
		// Prices from 1.00 to 999.99, spread by a multiplicative hash so that
		// neighbouring orders differ.
		if _, err := tx.Exec(ctx, `
INSERT INTO orders (id, user_id, price_cents)
SELECT g, 1 + (g * 7919) % $2::bigint, 100 + (g * 104729) % 99900
FROM generate_series(1, $1::bigint) g`, sizes.Orders, max(sizes.Users, 1)); err != nil {
			return fmt.Errorf("filling orders: %w", err)
		}
		// Generated names are padded to four digits, never cut to them
		// (lpad truncates): flag_0004 ... flag_9999, flag_10000 ...
		names, enabled := make([]string, len(SeedFlags)), make([]bool, len(SeedFlags))
		for i, f := range SeedFlags {
			names[i], enabled[i] = f.Name, f.Enabled
		}
		if _, err := tx.Exec(ctx, `
INSERT INTO feature_flags (id, name, enabled)
SELECT i, name, enabled FROM unnest($1::text[], $2::boolean[]) WITH ORDINALITY AS f (name, enabled, i)
UNION ALL
SELECT g, 'flag_' || lpad(g::text, greatest(4, length(g::text)), '0'), g % 2 = 0 FROM generate_series($3::bigint + 1, $4::bigint) g`,
			names, enabled, len(SeedFlags), sizes.Flags); err != nil {
			return fmt.Errorf("filling feature_flags: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("setting up schema %s: %w", schema, err)
	}
	// After the commit, so that the statistics see the committed rows.
	for _, table := range []string{"users", "orders", "feature_flags"} {
		if _, err := db.Exec(ctx, "ANALYZE "+pgx.Identifier{schema, table}.Sanitize()); err != nil {
			return fmt.Errorf("analysing %s.%s: %w", schema, table, err)
		}
	}
	return nil
}

// VerifyOptions say where Verify looks.
type VerifyOptions struct {
	Schema string
	// Redis, when not nil, must hold every flag in the hash RedisKey
	// (jobs.FeatureFlagsKey) with the value "true" or "false".
	Redis    *redis.Client
	RedisKey string
}

// Report is what Verify found.
type Report struct {
	Users, UsersActive, UsersDisabled, UsersEnabled int64
	Orders, OrdersWrong                             int64
	Flags                                           int64
	// FlagsChecked is false when Redis was not checked.
	FlagsChecked bool
	// FlagsWrong lists flags missing from Redis or with the wrong value,
	// as "name (want X, got Y)".
	FlagsWrong []string
}

// Problems lists what is wrong; it is empty when the backfills did their work.
func (r *Report) Problems() []string {
	var p []string
	if r.UsersEnabled > 0 {
		p = append(p, fmt.Sprintf("%d of %d users still have status 'enabled' (backfill 20260301120000)", r.UsersEnabled, r.Users))
	}
	if r.OrdersWrong > 0 {
		p = append(p, fmt.Sprintf("%d of %d orders have price_eur_cents <> price_cents * 92 / 100 (backfill 20260301120100)", r.OrdersWrong, r.Orders))
	}
	if len(r.FlagsWrong) > 0 {
		shown := r.FlagsWrong
		if len(shown) > 3 {
			shown = shown[:3]
		}
		p = append(p, fmt.Sprintf("%d of %d feature flags are wrong in Redis (backfill 20260301120200), e.g. %s",
			len(r.FlagsWrong), r.Flags, strings.Join(shown, ", ")))
	}
	return p
}

// ErrNotVerified is wrapped by Verify's error when the data is not as the
// backfills leave it.
var ErrNotVerified = errors.New("the backfills' work is not done")

// Verify checks the state the seed backfills leave behind: no user is
// 'enabled', every order has price_eur_cents = price_cents * 92 / 100, and,
// when o.Redis is set, every flag is in Redis. It returns the report, and an
// error wrapping ErrNotVerified that lists the problems when there are any.
func Verify(ctx context.Context, q Querier, o VerifyOptions) (*Report, error) {
	if o.Schema == "" {
		return nil, errors.New("schema is required")
	}
	table := func(name string) string { return pgx.Identifier{o.Schema, name}.Sanitize() }
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL AND to_regclass($3) IS NOT NULL`,
		table("users"), table("orders"), table("feature_flags")).Scan(&exists); err != nil {
		return nil, fmt.Errorf("%w", err)
	}
	if !exists {
		return nil, fmt.Errorf("the demo tables are missing from schema %s; run \"demo setup\" first", o.Schema)
	}
	r := &Report{}
	if err := q.QueryRow(ctx, `SELECT count(*),
	count(*) FILTER (WHERE status = 'active'),
	count(*) FILTER (WHERE status = 'disabled'),
	count(*) FILTER (WHERE status = 'enabled')
FROM `+table("users")).Scan(&r.Users, &r.UsersActive, &r.UsersDisabled, &r.UsersEnabled); err != nil {
		return nil, fmt.Errorf("checking users: %w", err)
	}
	if err := q.QueryRow(ctx, `SELECT count(*),
	count(*) FILTER (WHERE price_eur_cents IS DISTINCT FROM price_cents * 92 / 100)
FROM `+table("orders")).Scan(&r.Orders, &r.OrdersWrong); err != nil {
		return nil, fmt.Errorf("checking orders: %w", err)
	}
	rows, err := q.Query(ctx, `SELECT name, enabled FROM `+table("feature_flags")+` ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("reading feature_flags: %w", err)
	}
	flags, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Flag])
	if err != nil {
		return nil, fmt.Errorf("reading feature_flags: %w", err)
	}
	r.Flags = int64(len(flags))
	if o.Redis != nil {
		if o.RedisKey == "" {
			return nil, errors.New("RedisKey is required with Redis")
		}
		got, err := o.Redis.HGetAll(ctx, o.RedisKey).Result()
		if err != nil {
			return nil, fmt.Errorf("reading the Redis hash %s: %w", o.RedisKey, err)
		}
		r.FlagsChecked = true
		for _, f := range flags {
			want := fmt.Sprint(f.Enabled)
			v, ok := got[f.Name]
			switch {
			case !ok:
				r.FlagsWrong = append(r.FlagsWrong, fmt.Sprintf("%s (want %s, missing)", f.Name, want))
			case v != want:
				r.FlagsWrong = append(r.FlagsWrong, fmt.Sprintf("%s (want %s, got %q)", f.Name, want, v))
			}
		}
	}
	if p := r.Problems(); len(p) > 0 {
		return r, fmt.Errorf("%w: %s", ErrNotVerified, strings.Join(p, "; "))
	}
	return r, nil
}
