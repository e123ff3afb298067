package batches

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// The engine's own schema changes are numbered SQL files, embedded in the
// binaries: migrations/NNNN_name.up.sql, applied in order, each once, each in
// its own transaction together with its row in backfill_schema_version (with
// the file's checksum). A file whose first line is "-- backfill:no-transaction"
// runs outside a transaction (CREATE INDEX CONCURRENTLY needs that). Never
// edit a file that has shipped: add a new one.
//
//go:embed migrations/*.up.sql
var migrationFiles embed.FS

// Migration is one of the engine's schema changes.
type Migration struct {
	Version  int
	Name     string
	SQL      string
	Checksum string
	// NoTransaction is set by a first line "-- backfill:no-transaction".
	NoTransaction bool
}

var migrationName = regexp.MustCompile(`^([0-9]{4})_([a-z0-9_]+)\.up\.sql$`)

// Migrations returns the engine's schema changes in order.
func Migrations() []Migration {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		panic(fmt.Sprintf("batches: embedded migrations: %v", err)) // built in: cannot happen
	}
	var out []Migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			panic(fmt.Sprintf("batches: embedded migration %q is not named NNNN_name.up.sql", e.Name()))
		}
		content, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			panic(fmt.Sprintf("batches: embedded migrations: %v", err))
		}
		v, _ := strconv.Atoi(m[1])
		sum := sha256.Sum256(content)
		out = append(out, Migration{
			Version: v, Name: m[2], SQL: string(content), Checksum: hex.EncodeToString(sum[:8]),
			NoTransaction: strings.HasPrefix(string(content), "-- backfill:no-transaction"),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			panic(fmt.Sprintf("batches: embedded migrations are not numbered 1, 2, 3 ...: %d is number %d", m.Version, i+1))
		}
	}
	return out
}

// SchemaVersion is the engine's schema version this binary was built for.
func SchemaVersion() int { return len(Migrations()) }

// AppliedMigration is a row of backfill_schema_version.
type AppliedMigration struct {
	Version   int
	Name      string
	Checksum  string
	AppliedAt time.Time
}

// MigrateResult says what Migrate applied.
type MigrateResult struct {
	RiverSteps int
	// Applied are the engine's migrations this call applied.
	Applied []Migration
}

// Errors about the engine's schema version, for callers that test for them.
var (
	// ErrSchemaOutdated: the database is older than the binary; run migrate.
	ErrSchemaOutdated = errors.New("batches: the database schema is older than this binary")
	// ErrSchemaTooNew: the database was migrated by a newer binary.
	ErrSchemaTooNew = errors.New("batches: the database schema is newer than this binary")
	// ErrMigrationChanged: an applied migration differs from the binary's.
	ErrMigrationChanged = errors.New("batches: an applied migration differs from this binary's")
)

// Migrate installs or upgrades River's tables and the engine's own in the
// engine's schema (SchemaName), creating it, and adopts the tables of an
// earlier release that had none (adoptEarlierInstallTx). Concurrent calls,
// from many deploying nodes at once, take turns on a lease in a table (see
// migrateLock): no session state, so it works behind a transaction-pooling
// PgBouncer, and a lock left by a dead process expires with its lease.
func Migrate(ctx context.Context, pool *pgxpool.Pool, opts MigrateOptions) (*MigrateResult, error) {
	if err := bootstrapTx(ctx, pool); err != nil {
		return nil, err
	}
	lock, err := acquireMigrateLock(ctx, pool, opts)
	if err != nil {
		return nil, err
	}
	defer lock.release()

	migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: SchemaName()})
	if err != nil {
		return nil, fmt.Errorf("batches: migrate: %w", err)
	}
	river, err := migrator.Migrate(lock.ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return nil, fmt.Errorf("batches: migrating River's schema: %w", err)
	}
	res := &MigrateResult{RiverSteps: len(river.Versions)}

	applied, err := AppliedMigrations(lock.ctx, pool)
	if err != nil {
		return nil, err
	}
	known := Migrations()
	if err := compareMigrations(applied, known); err != nil && !errors.Is(err, ErrSchemaOutdated) {
		return nil, err
	}
	// Rows written by an earlier release have no name or checksum: adopt
	// the binary's, which compareMigrations found consistent.
	if _, err := pool.Exec(lock.ctx, inSchema(`UPDATE backfill_schema_version v SET name = m.name, checksum = m.checksum
FROM unnest($1::int[], $2::text[], $3::text[]) AS m(version, name, checksum)
WHERE v.version = m.version AND v.checksum IS NULL`), versionsOf(known), namesOf(known), checksumsOf(known)); err != nil {
		return nil, fmt.Errorf("batches: migrate: recording checksums: %w", err)
	}
	for _, m := range known[len(applied):] {
		if err := applyMigration(lock.ctx, pool, m); err != nil {
			return res, err
		}
		res.Applied = append(res.Applied, m)
	}
	return res, lock.err()
}

func versionsOf(ms []Migration) (out []int32) {
	for _, m := range ms {
		out = append(out, int32(m.Version))
	}
	return out
}

func namesOf(ms []Migration) (out []string) {
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

func checksumsOf(ms []Migration) (out []string) {
	for _, m := range ms {
		out = append(out, m.Checksum)
	}
	return out
}

// bootstrapTx creates the table that records the applied migrations, and
// brings one made by an earlier release (a version column only) up to date.
func bootstrapTx(ctx context.Context, pool *pgxpool.Pool) error {
	var ready bool
	if err := pool.QueryRow(ctx, inSchema(`SELECT to_regclass('backfill_migrate_lock') IS NOT NULL`)).Scan(&ready); err != nil {
		return fmt.Errorf("batches: migrate: %w", err)
	}
	if ready {
		return nil // done by an earlier call: no lock taken
	}
	const bootstrap = `
CREATE TABLE IF NOT EXISTS backfill_schema_version (version int NOT NULL);
-- An earlier release's table had no key: keep one row per version.
DELETE FROM backfill_schema_version a USING backfill_schema_version b WHERE a.ctid < b.ctid AND a.version = b.version;
ALTER TABLE backfill_schema_version
	ADD COLUMN IF NOT EXISTS name text,
	ADD COLUMN IF NOT EXISTS checksum text,
	ADD COLUMN IF NOT EXISTS applied_at timestamptz NOT NULL DEFAULT now();
CREATE UNIQUE INDEX IF NOT EXISTS backfill_schema_version_version ON backfill_schema_version (version);
CREATE TABLE IF NOT EXISTS backfill_migrate_lock (
	id          int         PRIMARY KEY CHECK (id = 1),
	holder      text        NOT NULL,
	acquired_at timestamptz NOT NULL DEFAULT now(),
	expires_at  timestamptz NOT NULL
);
COMMENT ON TABLE backfill_schema_version IS 'The engine''s schema migrations applied to this database: version, name and checksum of each file, and when.';
COMMENT ON TABLE backfill_migrate_lock IS 'The lease that serialises "enqueue migrate": one row while a migration runs, renewed while it works, free once expires_at has passed.';`
	// Concurrent bootstraps would collide in the catalog or deadlock on lock
	// upgrades: they take turns on a transaction-scoped advisory lock, which
	// ends with the transaction (so it is safe behind PgBouncer too).
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, bootstrapLockKey); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{SchemaName()}.Sanitize()); err != nil {
			return err
		}
		if err := adoptEarlierInstallTx(ctx, tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, inSchema(bootstrap))
		return err
	})
	if err != nil {
		return fmt.Errorf("batches: migrate: preparing the migration tables: %w", err)
	}
	return nil
}

// earlierTables are the engine's relations of the release before it had a
// schema of its own.
var earlierTables = []string{"backfill_runs", "backfill_partitions", "backfill_throughput", "backfill_schema_version", "backfill_status"}

// adoptEarlierInstallTx moves the engine's tables made by an earlier release
// (in the first schema of search_path, usually public) into the engine's
// schema, so that the version table's history, and with it run-once, is
// kept. River's tables there stay where they are: the application may share
// them. The runs' jobs were in them, so the heartbeat of the new workers
// gives unfinished partitions new jobs in the engine's schema.
func adoptEarlierInstallTx(ctx context.Context, tx pgx.Tx) error {
	schema := SchemaName()
	var earlier *string
	err := tx.QueryRow(ctx, `SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass('backfill_runs') AND n.nspname <> $1 AND to_regclass($2) IS NULL`,
		schema, pgx.Identifier{schema, "backfill_runs"}.Sanitize()).Scan(&earlier)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, name := range earlierTables {
		var kind string
		err := tx.QueryRow(ctx, `SELECT c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
			*earlier, name).Scan(&kind)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return err
		}
		what := "TABLE"
		if kind == "v" {
			what = "VIEW"
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf("ALTER %s %s SET SCHEMA %s", what, pgx.Identifier{*earlier, name}.Sanitize(), pgx.Identifier{schema}.Sanitize())); err != nil {
			return fmt.Errorf("moving %s.%s into schema %s: %w", *earlier, name, schema, err)
		}
	}
	// The old jobs' ids mean nothing in the new River tables (and may name
	// other jobs there): unfinished partitions have no owner until the
	// heartbeat, resume or retry gives them one.
	_, err = tx.Exec(ctx, inSchema(`UPDATE backfill_partitions SET job_id = NULL WHERE state IN ('pending', 'running')`))
	return err
}

// bootstrapLockKey names the advisory lock of bootstrapTx.
const bootstrapLockKey int64 = 7349021554

// AppliedMigrations reads backfill_schema_version, oldest first; none when
// the table does not exist yet.
func AppliedMigrations(ctx context.Context, q Querier) ([]AppliedMigration, error) {
	var exists bool
	if err := q.QueryRow(ctx, inSchema(`SELECT to_regclass('backfill_schema_version') IS NOT NULL`)).Scan(&exists); err != nil {
		return nil, fmt.Errorf("batches: reading the schema version: %w", err)
	}
	if !exists {
		return nil, nil
	}
	// name, checksum and applied_at came with the versioned migrations: a
	// table of an earlier release has only version.
	var hasChecksum bool
	if err := q.QueryRow(ctx, inSchema(`SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'backfill_schema_version'::regclass AND attname = 'checksum' AND NOT attisdropped)`)).Scan(&hasChecksum); err != nil {
		return nil, fmt.Errorf("batches: reading the schema version: %w", err)
	}
	sql := `SELECT version, '', '', now() FROM backfill_schema_version ORDER BY version`
	if hasChecksum {
		sql = `SELECT version, coalesce(name, ''), coalesce(checksum, ''), applied_at FROM backfill_schema_version ORDER BY version`
	}
	rows, err := q.Query(ctx, inSchema(sql))
	if err != nil {
		return nil, fmt.Errorf("batches: reading the schema version: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AppliedMigration, error) {
		var a AppliedMigration
		err := r.Scan(&a.Version, &a.Name, &a.Checksum, &a.AppliedAt)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("batches: reading the schema version: %w", err)
	}
	return out, nil
}

// compareMigrations checks the applied migrations against the binary's:
// ErrSchemaOutdated when some are not applied yet, ErrSchemaTooNew when the
// database has more, ErrMigrationChanged when one differs. A checksum left
// empty by an earlier release is not compared.
func compareMigrations(applied []AppliedMigration, known []Migration) error {
	for i, a := range applied {
		if i >= len(known) {
			return fmt.Errorf("%w: the database is at schema version %d, this binary knows up to %d: upgrade the binary",
				ErrSchemaTooNew, applied[len(applied)-1].Version, len(known))
		}
		k := known[i]
		if a.Version != k.Version || (a.Checksum != "" && a.Checksum != k.Checksum) {
			return fmt.Errorf("%w: migration %d is recorded as %q (checksum %s), this binary's is %04d_%s (checksum %s)",
				ErrMigrationChanged, a.Version, a.Name, a.Checksum, k.Version, k.Name, k.Checksum)
		}
	}
	if len(applied) == 0 {
		return fmt.Errorf("%w: schema %s has no version table: run \"enqueue migrate\", or point --schema (BACKFILL_SCHEMA) at the schema that has it",
			ErrSchemaOutdated, pgx.Identifier{SchemaName()}.Sanitize())
	}
	if len(applied) < len(known) {
		return fmt.Errorf("%w: the database is at schema version %d, this binary needs %d: run \"enqueue migrate\"",
			ErrSchemaOutdated, len(applied), len(known))
	}
	return nil
}

// CheckSchema refuses to work on a database whose engine schema is not the
// one this binary was built for, older or newer.
func CheckSchema(ctx context.Context, q Querier) error {
	applied, err := AppliedMigrations(ctx, q)
	if err != nil {
		return err
	}
	return compareMigrations(applied, Migrations())
}

// applyMigration runs m and records it, in one transaction unless m must
// run outside one; then only the record is transactional, and a failure
// between the two is reported with what to check.
func applyMigration(ctx context.Context, pool *pgxpool.Pool, m Migration) error {
	record := func(ctx context.Context, db Execer) error {
		_, err := db.Exec(ctx, inSchema(`INSERT INTO backfill_schema_version (version, name, checksum) VALUES ($1, $2, $3)
ON CONFLICT (version) DO UPDATE SET name = excluded.name, checksum = excluded.checksum`), m.Version, m.Name, m.Checksum)
		return err
	}
	var err error
	if m.NoTransaction {
		// No search_path of our own here: such a file names only tables
		// inSchema knows.
		if _, err = pool.Exec(ctx, inSchema(m.SQL)); err == nil {
			err = record(ctx, pool)
		}
	} else {
		err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			// What the file creates lands in the engine's schema.
			if _, err := tx.Exec(ctx, `SELECT set_config('search_path', $1, true)`, pgx.Identifier{SchemaName()}.Sanitize()); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			return record(ctx, tx)
		})
	}
	if err != nil {
		return fmt.Errorf("batches: migrate: migration %04d_%s: %w", m.Version, m.Name, err)
	}
	return nil
}
