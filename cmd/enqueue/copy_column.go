package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/cli"
)

// A column copy: the expand/contract kit's way to rename a column or change
// its type without downtime (seed 003). "enqueue new NAME --copy-column
// TABLE.OLD:NEW [--type TYPE]" reads the table from the database and writes
// three files to review:
//
//   - VERSION_NAME.expand.sql, for the application's own schema migration
//     (deploy 1): the new column, the conversion, and a trigger that keeps
//     the two columns in step on every insert and update, whichever
//     application writes, so that dual writes begin in the database itself;
//   - the backfill (DIR/VERSION_NAME.sql): keyset batches of the rows whose
//     copy differs, with verify and, for a type change, lossy conditions;
//   - VERSION_NAME.contract.sql (the last deploy, after "enqueue wait" and
//     "enqueue verify"): the trigger dropped, then the old column.
//
// The conversion is one SQL function used by the trigger, the backfill and
// verify alike: NULL for a value that does not come back unchanged when
// converted back (a fraction cast to an integer, a text cut to a shorter
// varchar), so the loss check can count those rows before a run.

// copyColumn is a column copy, as read from the database.
type copyColumn struct {
	schema, table string // the table, resolved
	key           string // its primary key's one column
	old, new      string
	oldType       string // format_type of the old column
	newType       string // the new column's type (oldType for a rename)
	notNull       bool   // the old column is NOT NULL
}

var plainName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// typeName is what --type accepts: a type name with an optional modifier
// and array brackets, such as "bigint", "numeric(12,2)" or "text[]".
var typeName = regexp.MustCompile(`^[a-z_][a-z0-9_ ]*(\([0-9, ]+\))?(\[\])?$`)

// parseCopyColumn reads TABLE.OLD:NEW (TABLE may be schema.table).
func parseCopyColumn(v string) (table, old, new string, err error) {
	from, to, ok := strings.Cut(v, ":")
	dot := strings.LastIndex(from, ".")
	if !ok || dot < 0 {
		return "", "", "", cli.Usagef("new: --copy-column wants TABLE.OLD:NEW (such as orders.price:price_cents), got %q", v)
	}
	table, old, new = from[:dot], from[dot+1:], to
	for _, part := range append(strings.Split(table, "."), old, new) {
		if !plainName.MatchString(part) {
			return "", "", "", cli.Usagef("new: --copy-column: %q must be a lower-case SQL name (letters, digits, underscores)", part)
		}
	}
	if old == new {
		return "", "", "", cli.Usagef("new: --copy-column: the new column must have another name than %q", old)
	}
	return table, old, new, nil
}

// inspectCopyColumn reads what the files need from the catalog: the old
// column's type and nullability, the table's one-column primary key, and
// that the new column does not exist yet.
func inspectCopyColumn(ctx context.Context, q batches.Querier, table, old, new, newType string) (*copyColumn, error) {
	cc := &copyColumn{old: old, new: new}
	var (
		pk        []string
		newExists bool
	)
	err := q.QueryRow(ctx, `
SELECT n.nspname, c.relname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
	coalesce((SELECT array_agg(ka.attname::text) FROM pg_index i
		JOIN pg_attribute ka ON ka.attrelid = i.indrelid AND ka.attnum = ANY (i.indkey)
		WHERE i.indrelid = c.oid AND i.indisprimary), '{}'),
	EXISTS (SELECT 1 FROM pg_attribute x WHERE x.attrelid = c.oid AND x.attname = $3 AND NOT x.attisdropped)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped
WHERE c.oid = to_regclass($1)`, table, old, new).Scan(&cc.schema, &cc.table, &cc.oldType, &cc.notNull, &pk, &newExists)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("new: --copy-column: table %s has no column %s (or does not exist)", table, old)
	case err != nil:
		return nil, fmt.Errorf("new: reading %s from the database: %w", table, err)
	case len(pk) != 1:
		return nil, fmt.Errorf("new: --copy-column: %s needs a primary key of one column to cut batches on, it has %d", table, len(pk))
	case newExists:
		return nil, fmt.Errorf("new: --copy-column: %s already has a column %s", table, new)
	}
	cc.key = pk[0]
	cc.newType = cc.oldType
	if newType != "" {
		if !typeName.MatchString(newType) {
			return nil, cli.Usagef("new: --type %q is not a type name such as bigint or numeric(12,2)", newType)
		}
		var known bool
		if err := q.QueryRow(ctx, `SELECT to_regtype($1) IS NOT NULL`, newType).Scan(&known); err != nil {
			return nil, fmt.Errorf("new: checking --type: %w", err)
		}
		if !known {
			return nil, cli.Usagef("new: --type %q is not a type of this database", newType)
		}
		cc.newType = newType
	}
	return cc, nil
}

// converts reports whether the copy changes the type (not a plain rename).
func (cc *copyColumn) converts() bool { return cc.newType != cc.oldType }

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// tableName is the table, schema-qualified and quoted.
func (cc *copyColumn) tableName() string { return pgx.Identifier{cc.schema, cc.table}.Sanitize() }

// objectName is the name of one of the copy's own objects (the conversion,
// the trigger): table_new_suffix.
func (cc *copyColumn) objectName(suffix string) string { return shortName(cc.table+"_"+cc.new, suffix) }

// shortName is base_suffix, base cut with a hash of it to fit PostgreSQL's
// 63 bytes.
func shortName(base, suffix string) string {
	if len(base)+len(suffix)+1 > 63 {
		sum := sha256.Sum256([]byte(base))
		base = base[:63-len(suffix)-1-9] + "_" + hex.EncodeToString(sum[:])[:8]
	}
	return base + "_" + suffix
}

// convert is the SQL of the old value expr converted to the new type.
func (cc *copyColumn) convert(expr string) string {
	if !cc.converts() {
		return expr
	}
	return pgx.Identifier{cc.schema, cc.objectName("convert")}.Sanitize() + "(" + expr + ")"
}

// expandSQL is deploy 1's schema change.
func (cc *copyColumn) expandSQL(version int64, name string) string {
	var b strings.Builder
	t, o, n := cc.tableName(), ident(cc.old), ident(cc.new)
	fmt.Fprintf(&b, `-- %[1]d_%[2]s: expand (deploy 1), for the application's own schema migration.
-- Written by "enqueue new %[2]s --copy-column %[3]s.%[4]s:%[5]s%[6]s".
--
-- It adds %[3]s.%[5]s and a trigger that keeps it in step with %[4]s on every
-- insert and update, whichever application writes: dual writes begin in the
-- database itself, from this migration on. The steps, each its own deploy:
--   1. this file; then "enqueue pending" copies the rows written before it
--      (%[1]d_%[2]s.sql, the backfill)
--   2. switch the application to read and write %[5]s; the trigger keeps
--      %[4]s in step for code that still uses it
--   3. gate: enqueue wait %[1]d && enqueue verify %[1]d
--   4. %[1]d_%[2]s.contract.sql: drop the trigger, then %[4]s
--
-- Adding a column takes a brief ACCESS EXCLUSIVE lock on the table: run this
-- with a lock_timeout (SET lock_timeout = '5s') and retry rather than queue
-- the application behind it.

ALTER TABLE %[7]s ADD COLUMN %[8]s %[9]s;
`, version, name, cc.schema+"."+cc.table, cc.old, cc.new, cc.typeFlag(), t, n, cc.newType)
	if cc.converts() {
		fmt.Fprintf(&b, `
-- The conversion, shared by the trigger, the backfill and "enqueue verify":
-- NULL for a value that does not survive it (it does not come back unchanged
-- when converted back, or does not convert at all). The backfill's lossy
-- condition counts those rows before a run is recorded. (Not PARALLEL SAFE:
-- its exception block is a subtransaction, which parallel workers cannot run.)
CREATE FUNCTION %[1]s(v %[2]s) RETURNS %[3]s
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	IF v IS NULL OR v::%[3]s::%[2]s IS DISTINCT FROM v THEN
		RETURN NULL;
	END IF;
	RETURN v::%[3]s;
EXCEPTION WHEN others THEN
	RETURN NULL; -- out of range, or not a value of the new type
END $$;
`, pgx.Identifier{cc.schema, cc.objectName("convert")}.Sanitize(), cc.oldType, cc.newType)
	}
	back := "NEW." + n
	if cc.converts() {
		back += "::" + cc.oldType
	}
	fmt.Fprintf(&b, `
-- Keeps the two columns in step. An insert that gives only one of them gets
-- the other; an update that changes only one changes the other to match
-- (unless it already matches, as after the backfill's own update), and any
-- other update of a row not copied yet copies it.
CREATE FUNCTION %[1]s() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		IF NEW.%[3]s IS NULL THEN
			NEW.%[3]s := %[4]s;
		ELSIF NEW.%[2]s IS NULL THEN
			NEW.%[2]s := %[5]s;
		END IF;
	ELSIF NEW.%[2]s IS DISTINCT FROM OLD.%[2]s AND NEW.%[3]s IS NOT DISTINCT FROM OLD.%[3]s THEN
		NEW.%[3]s := %[4]s;
	ELSIF NEW.%[3]s IS DISTINCT FROM OLD.%[3]s AND NEW.%[2]s IS NOT DISTINCT FROM OLD.%[2]s
		AND NEW.%[3]s IS DISTINCT FROM %[4]s THEN
		NEW.%[2]s := %[5]s;
	ELSIF NEW.%[3]s IS NULL THEN
		NEW.%[3]s := %[4]s; -- a row from before the expand, updated otherwise
	END IF;
	RETURN NEW;
END $$;

CREATE TRIGGER %[6]s BEFORE INSERT OR UPDATE ON %[7]s
FOR EACH ROW EXECUTE FUNCTION %[1]s();
`, pgx.Identifier{cc.schema, cc.objectName("sync")}.Sanitize(), o, n, cc.convert("NEW."+o), back,
		ident(cc.objectName("sync")), t)
	return b.String()
}

func (cc *copyColumn) typeFlag() string {
	if cc.converts() {
		return " --type " + cc.newType
	}
	return ""
}

// backfillSQL is the backfill file: batches of the rows whose copy differs.
func (cc *copyColumn) backfillSQL(version int64, name string, manual bool) string {
	o, n, k := ident(cc.old), ident(cc.new), ident(cc.key)
	// Not copied yet: from the expand on, the trigger keeps every copy it
	// writes in step, so a row needs the backfill only while its copy is
	// NULL. A cheap test: the conversion runs only for those rows.
	uncopied := fmt.Sprintf("%s IS NULL AND %s IS NOT NULL", n, o)
	differs := fmt.Sprintf("%s IS DISTINCT FROM %s", n, cc.convert(o))
	what := "a rename: the same type"
	if cc.converts() {
		what = fmt.Sprintf("%s to %s", cc.oldType, cc.newType)
	}
	when := `"enqueue pending" enqueues it after deploy 1`
	if manual {
		when = fmt.Sprintf(`"enqueue run %d" enqueues it after deploy 1`, version)
	}
	var lossy string
	if cc.converts() {
		lossy = fmt.Sprintf(`-- Rows whose value does not survive the conversion: a run is refused while
-- any exists, with their count and first keys ("enqueue run %[1]d --dry-run"
-- shows them), unless on_loss says what becomes of them: null accepts NULL
-- copies (what the conversion gives them). Fix the rows, or decide.
-- lossy: %[2]s IS NOT NULL AND %[3]s IS NULL
-- (off) on_loss: null
`, version, o, cc.convert(o))
	}
	return fmt.Sprintf(`-- %[1]d_%[2]s: copy %[3]s.%[4]s into %[5]s (%[6]s).
-- Written by "enqueue new %[2]s --copy-column %[3]s.%[4]s:%[5]s%[7]s", with
-- %[1]d_%[2]s.expand.sql and %[1]d_%[2]s.contract.sql.
--
-- Deploy 1 runs the expand file: the column, and the trigger that keeps it in
-- step from then on. This backfill copies the rows written before it; %[8]s.
-- Batches take only the rows not copied yet (the trigger keeps every copy
-- it writes in step), so a second pass is cheap, and "enqueue verify %[1]d"
-- checks every row before the contract step.
-- table: %[3]s
-- key: %[9]s
-- where: %[16]s
-- verify: %[11]s IS NOT DISTINCT FROM %[12]s
%[13]sUPDATE %[14]s
SET %[11]s = %[12]s
WHERE %[15]s BETWEEN @first AND @last AND %[16]s AND %[10]s;
`, version, name, cc.schema+"."+cc.table, cc.old, cc.new, what, cc.typeFlag(), when,
		cc.key, differs, n, cc.convert(o), lossy, cc.tableName(), k, uncopied)
}

// contractSQL is the last deploy's schema change.
func (cc *copyColumn) contractSQL(version int64, name string) string {
	t, o, n := cc.tableName(), ident(cc.old), ident(cc.new)
	var b strings.Builder
	fmt.Fprintf(&b, `-- %[1]d_%[2]s: contract (the last deploy), for the application's own schema
-- migration. Run it only once every application reads and writes %[3]s
-- alone, and after the gate passed:
--   enqueue wait %[1]d && enqueue verify %[1]d
-- (the backfill completed, and every row's %[3]s agrees with %[4]s).
-- Run it in one transaction, as most migration tools do: the trigger and
-- %[4]s must go together, or a write between the two could fail.

DROP TRIGGER %[5]s ON %[6]s;
DROP FUNCTION %[7]s();
`, version, name, cc.new, cc.old, ident(cc.objectName("sync")), t, pgx.Identifier{cc.schema, cc.objectName("sync")}.Sanitize())
	if cc.notNull {
		c := ident(cc.objectName("not_null"))
		fmt.Fprintf(&b, `
-- %[1]s was NOT NULL; so becomes %[2]s, without a long lock: the check is
-- validated while writes go on, and SET NOT NULL then uses it. Rows whose
-- value did not survive a type change (on_loss: null) have NULL copies: the
-- validation then fails and rolls this back; fix those rows first.
ALTER TABLE %[3]s ADD CONSTRAINT %[4]s CHECK (%[2]s IS NOT NULL) NOT VALID;
ALTER TABLE %[3]s VALIDATE CONSTRAINT %[4]s;
ALTER TABLE %[3]s ALTER COLUMN %[2]s SET NOT NULL;
ALTER TABLE %[3]s DROP CONSTRAINT %[4]s;
`, o, n, t, c)
	}
	fmt.Fprintf(&b, `
ALTER TABLE %s DROP COLUMN %s;
`, t, o)
	if cc.converts() {
		fmt.Fprintf(&b, `DROP FUNCTION %s(%s);
`, pgx.Identifier{cc.schema, cc.objectName("convert")}.Sanitize(), cc.oldType)
	}
	return b.String()
}
