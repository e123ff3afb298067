package batches

// ApplyMigration lets the external tests run a migration of their own.
var ApplyMigration = applyMigration

// CutQueries are the SQL of a run's two cut queries, the whole batch's and
// the rest of the range's, after cursor (nil: from the start) up to upper
// (nil: to the end), with their arguments.
func CutQueries(o Options, batchSize int, cursor, upper *string) (full string, fullArgs []any, partial string, partialArgs []any) {
	q := newKeysetQueries(o)
	full, fullArgs = q.fullQuery(batchSize, cursor, upper)
	c, u, args := cutArgs(cursor, upper)
	return full, fullArgs, q.partial[c][u], args
}
