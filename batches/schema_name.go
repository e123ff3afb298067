package batches

import (
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
)

// SchemaDefault is the schema the engine's tables and River's live in,
// apart from the application's.
const SchemaDefault = "backfill"

var (
	schemaName atomic.Pointer[string]
	// qualifiedSQL caches inSchema's results per schema and statement.
	qualifiedSQL sync.Map
)

// SetSchema chooses the schema of the engine's tables and River's; binaries
// call it once at start (--schema, BACKFILL_SCHEMA), before any query.
func SetSchema(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("batches: a schema name must have 1 to 63 bytes, got %q", name)
	}
	schemaName.Store(&name)
	return nil
}

// SchemaName is the schema of the engine's tables and River's.
func SchemaName() string {
	if p := schemaName.Load(); p != nil {
		return *p
	}
	return SchemaDefault
}

// ourTables are the names the engine's statements qualify with the schema:
// its own tables and River's job table. A new table gets its name added
// here (the migrations themselves run with the schema as search_path).
var ourTables = regexp.MustCompile(`\b(backfill_runs|backfill_partitions|backfill_throughput|backfill_throughput_minutes|backfill_workers|backfill_events|backfill_schema_version|backfill_migrate_lock|river_job)\b`)

// inSchema qualifies the engine's table names in sql with the schema, so that
// its statements never depend on search_path (nor find an application's own
// river_job). Names inside quotes stay as they are, so to_regclass('...')
// and '...'::regclass get the qualified name too.
func inSchema(sql string) string {
	schema := SchemaName()
	key := schema + "\x00" + sql
	if q, ok := qualifiedSQL.Load(key); ok {
		return q.(string)
	}
	q := ourTables.ReplaceAllString(sql, pgx.Identifier{schema}.Sanitize()+".$1")
	qualifiedSQL.Store(key, q)
	return q
}
