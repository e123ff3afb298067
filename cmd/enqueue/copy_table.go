package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/cli"
)

// A table copy: the expand/contract kit's way to rename a table (seed 003).
// "enqueue new NAME --copy-table OLD:NEW" writes, like a column copy:
//
//   - the expand SQL: NEW created LIKE OLD (columns, defaults, constraints,
//     indexes), and a trigger on each table that mirrors every insert,
//     update and delete into the other, so that applications may write
//     either while they switch;
//   - the backfill: keyset batches of OLD's rows whose copy in NEW is
//     missing or differs, upserted with OLD's rows locked FOR SHARE, so that
//     a concurrent write cannot be overwritten by an older copy;
//   - the contract SQL: both triggers dropped, OLD's sequences handed to
//     NEW, then OLD dropped.
//
// The triggers do not fire each other: the one that writes sets a
// transaction-local flag (set_config(..., true), safe behind a transaction
// pooler) that the other checks, and the backfill sets it too.

// copyTable is a table copy, as read from the database.
type copyTable struct {
	schema, old, new string
	key              string
	columns          []string // every column but generated ones, in order
	sequences        []ownedSequence
}

// ownedSequence is a sequence owned by a column of the old table (a
// serial's): it must move to the new table before the old one is dropped.
type ownedSequence struct{ name, column string }

// syncFlag is the transaction-local setting the copy's writers set.
const syncFlag = "backfill.syncing"

// parseCopyTable reads OLD:NEW (OLD may be schema.table; NEW is a name in
// the same schema).
func parseCopyTable(v string) (old, new string, err error) {
	old, new, ok := strings.Cut(v, ":")
	if !ok {
		return "", "", cli.Usagef("new: --copy-table wants OLD:NEW (such as orders:purchases), got %q", v)
	}
	for _, part := range append(strings.Split(old, "."), new) {
		if !plainName.MatchString(part) {
			return "", "", cli.Usagef("new: --copy-table: %q must be a lower-case SQL name (letters, digits, underscores)", part)
		}
	}
	return old, new, nil
}

// inspectCopyTable reads the old table's columns, key and owned sequences,
// and checks that the new one does not exist.
func inspectCopyTable(ctx context.Context, q batches.Querier, old, new string) (*copyTable, error) {
	ct := &copyTable{new: new}
	var (
		pk         []string
		identities []string
		oid        uint32
	)
	err := q.QueryRow(ctx, `
SELECT c.oid, n.nspname, c.relname,
	coalesce((SELECT array_agg(ka.attname::text) FROM pg_index i
		JOIN pg_attribute ka ON ka.attrelid = i.indrelid AND ka.attnum = ANY (i.indkey)
		WHERE i.indrelid = c.oid AND i.indisprimary), '{}'),
	coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
		WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), '{}'),
	coalesce((SELECT array_agg(a.attname::text) FROM pg_attribute a
		WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attidentity <> ''), '{}')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')`, old).Scan(&oid, &ct.schema, &ct.old, &pk, &ct.columns, &identities)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("new: --copy-table: table %s does not exist", old)
	case err != nil:
		return nil, fmt.Errorf("new: reading %s from the database: %w", old, err)
	case len(pk) != 1:
		return nil, fmt.Errorf("new: --copy-table: %s needs a primary key of one column to cut batches on, it has %d", old, len(pk))
	case len(identities) > 0:
		return nil, fmt.Errorf("new: --copy-table: %s.%s is an identity column, whose sequence cannot be shared by the copy; give it a sequence default (serial) first", old, identities[0])
	}
	ct.key = pk[0]
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, pgx.Identifier{ct.schema, new}.Sanitize()).Scan(&exists); err != nil {
		return nil, fmt.Errorf("new: checking %s: %w", new, err)
	}
	if exists {
		return nil, fmt.Errorf("new: --copy-table: %s.%s already exists", ct.schema, new)
	}
	rows, err := q.Query(ctx, `
SELECT format('%I.%I', sn.nspname, s.relname), a.attname::text
FROM pg_depend d
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.refobjid = $1 AND d.classid = 'pg_class'::regclass AND d.deptype = 'a'
ORDER BY a.attnum`, oid)
	if err != nil {
		return nil, fmt.Errorf("new: reading the sequences of %s: %w", old, err)
	}
	ct.sequences, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (ownedSequence, error) {
		var s ownedSequence
		err := r.Scan(&s.name, &s.column)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("new: reading the sequences of %s: %w", old, err)
	}
	return ct, nil
}

func (ct *copyTable) oldName() string { return pgx.Identifier{ct.schema, ct.old}.Sanitize() }
func (ct *copyTable) newName() string { return pgx.Identifier{ct.schema, ct.new}.Sanitize() }

// objectName is the name of the trigger (and its function) that mirrors
// from's writes into to.
func (ct *copyTable) objectName(from, to string) string { return shortName(from+"_to_"+to, "sync") }

// list is the columns, quoted, each prefixed with prefix ("NEW.", "t.").
func (ct *copyTable) list(prefix string) string {
	out := make([]string, len(ct.columns))
	for i, c := range ct.columns {
		out[i] = prefix + ident(c)
	}
	return strings.Join(out, ", ")
}

// upsert is the ON CONFLICT clause that makes target hold the excluded
// row, touching it only when it differs.
func (ct *copyTable) upsert(target string) string {
	var rest []string
	for _, c := range ct.columns {
		if c != ct.key {
			rest = append(rest, ident(c))
		}
	}
	if len(rest) == 0 {
		return fmt.Sprintf("ON CONFLICT (%s) DO NOTHING", ident(ct.key))
	}
	set := make([]string, len(rest))
	cur := make([]string, len(rest))
	for i, c := range rest {
		set[i], cur[i] = "EXCLUDED."+c, target+"."+c
	}
	return fmt.Sprintf("ON CONFLICT (%s) DO UPDATE SET (%s) = ROW(%s)\n\t\tWHERE (%s) IS DISTINCT FROM (%s)",
		ident(ct.key), strings.Join(rest, ", "), strings.Join(set, ", "), strings.Join(cur, ", "), strings.Join(set, ", "))
}

// syncFunction is the trigger function that mirrors from's writes into to.
func (ct *copyTable) syncFunction(from, to string) string {
	fn := pgx.Identifier{ct.schema, ct.objectName(from, to)}.Sanitize()
	toName := pgx.Identifier{ct.schema, to}.Sanitize()
	k := ident(ct.key)
	return fmt.Sprintf(`CREATE FUNCTION %[1]s() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF current_setting('%[2]s', true) = 'on' THEN
		RETURN NULL; -- a write of the other table's trigger, or of the backfill
	END IF;
	PERFORM set_config('%[2]s', 'on', true);
	IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND NEW.%[3]s IS DISTINCT FROM OLD.%[3]s) THEN
		DELETE FROM %[4]s WHERE %[3]s = OLD.%[3]s;
	END IF;
	IF TG_OP <> 'DELETE' THEN
		INSERT INTO %[4]s AS c (%[5]s) VALUES (%[6]s)
		%[7]s;
	END IF;
	PERFORM set_config('%[2]s', 'off', true);
	RETURN NULL;
END $$;

CREATE TRIGGER %[8]s AFTER INSERT OR UPDATE OR DELETE ON %[9]s
FOR EACH ROW EXECUTE FUNCTION %[1]s();
`, fn, syncFlag, k, toName, ct.list(""), ct.list("NEW."), ct.upsert("c"),
		ident(ct.objectName(from, to)), pgx.Identifier{ct.schema, from}.Sanitize())
}

// expandSQL is deploy 1's schema change.
func (ct *copyTable) expandSQL(version int64, name string) string {
	return fmt.Sprintf(`-- %[1]d_%[2]s: expand (deploy 1), for the application's own schema migration.
-- Written by "enqueue new %[2]s --copy-table %[3]s.%[4]s:%[5]s".
--
-- It creates %[3]s.%[5]s like %[4]s (columns, defaults, constraints,
-- indexes; not foreign keys, triggers or grants: add those you need) and a
-- trigger on each table that mirrors every insert, update and delete into the
-- other, whichever application writes. The steps, each its own deploy:
--   1. this file; then "enqueue pending" copies the rows written before it
--      (%[1]d_%[2]s.sql, the backfill)
--   2. switch the application to %[5]s; the triggers keep %[4]s in step for
--      code that still uses it
--   3. gate: enqueue wait %[1]d && enqueue verify %[1]d
--   4. %[1]d_%[2]s.contract.sql: drop the triggers, then %[4]s
-- Foreign keys of other tables that reference %[4]s must move to %[5]s
-- before step 4.

CREATE TABLE %[6]s (LIKE %[7]s INCLUDING ALL);

%[8]s
%[9]s`, version, name, ct.schema, ct.old, ct.new, ct.newName(), ct.oldName(),
		ct.syncFunction(ct.old, ct.new), ct.syncFunction(ct.new, ct.old))
}

// agrees is the SQL condition of an old row (alias t) whose copy exists
// and is equal.
func (ct *copyTable) agrees() string {
	k := ident(ct.key)
	return fmt.Sprintf("EXISTS (SELECT 1 FROM %s c WHERE c.%s = t.%s AND (%s) IS NOT DISTINCT FROM (%s))",
		ct.newName(), k, k, ct.list("c."), ct.list("t."))
}

// backfillSQL is the backfill file.
func (ct *copyTable) backfillSQL(version int64, name string, manual bool) string {
	when := `"enqueue pending" enqueues it after deploy 1`
	if manual {
		when = fmt.Sprintf(`"enqueue run %d" enqueues it after deploy 1`, version)
	}
	k := ident(ct.key)
	return fmt.Sprintf(`-- %[1]d_%[2]s: copy %[3]s.%[4]s into %[3]s.%[5]s.
-- Written by "enqueue new %[2]s --copy-table %[3]s.%[4]s:%[5]s", with
-- %[1]d_%[2]s.expand.sql and %[1]d_%[2]s.contract.sql.
--
-- Deploy 1 runs the expand file: the table, and the triggers that mirror
-- writes from then on. This backfill copies the rows written before it; %[6]s.
-- Batches walk every key; the statement writes only the rows whose copy is
-- missing or differs, so a second pass writes nothing. (A where condition
-- that joins the copy would make every batch's cut a join of both tables.)
-- "enqueue verify %[1]d" checks every row before the contract step (the
-- table is named t in the condition). The rows are locked FOR SHARE while
-- they are copied, so a concurrent write waits and then wins; the flag set
-- first keeps the triggers from mirroring the copy back.
-- table: %[3]s.%[4]s
-- key: %[7]s
-- verify: %[8]s
WITH quiet AS (SELECT set_config('%[9]s', 'on', true))
INSERT INTO %[10]s AS c (%[11]s)
SELECT %[12]s FROM %[13]s t, quiet
WHERE t.%[14]s BETWEEN @first AND @last
FOR SHARE OF t
%[15]s;
`, version, name, ct.schema, ct.old, ct.new, when, ct.key, ct.agrees(), syncFlag,
		ct.newName(), ct.list(""), ct.list("t."), ct.oldName(), k, ct.upsert("c"))
}

// contractSQL is the last deploy's schema change.
func (ct *copyTable) contractSQL(version int64, name string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `-- %[1]d_%[2]s: contract (the last deploy), for the application's own schema
-- migration. Run it only once every application uses %[3]s alone, and after
-- the gate passed:
--   enqueue wait %[1]d && enqueue verify %[1]d
-- Run it in one transaction, as most migration tools do. It locks %[3]s
-- first, then the old table: the order of the applications' own writes to
-- %[3]s, whose trigger writes the old one, so the two cannot deadlock.

LOCK TABLE %[10]s, %[5]s IN ACCESS EXCLUSIVE MODE;
DROP TRIGGER %[4]s ON %[5]s;
DROP TRIGGER %[6]s ON %[7]s;
DROP FUNCTION %[8]s();
DROP FUNCTION %[9]s();
`, version, name, ct.new,
		ident(ct.objectName(ct.old, ct.new)), ct.oldName(), ident(ct.objectName(ct.new, ct.old)), ct.newName(),
		pgx.Identifier{ct.schema, ct.objectName(ct.old, ct.new)}.Sanitize(), pgx.Identifier{ct.schema, ct.objectName(ct.new, ct.old)}.Sanitize(),
		ct.newName())
	for _, s := range ct.sequences {
		fmt.Fprintf(&b, "-- %s's default takes its values from this sequence: keep it.\nALTER SEQUENCE %s OWNED BY %s.%s;\n",
			s.column, s.name, ct.newName(), ident(s.column))
	}
	fmt.Fprintf(&b, "DROP TABLE %s;\n", ct.oldName())
	return b.String()
}
