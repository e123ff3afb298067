package batches

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// GoBackfill is a backfill written in Go. It walks a table's key space like a
// SQL backfill and processes each batch in the batch's transaction. Register
// it with Registry.Register in every binary that enqueues or works it.
//
// Database writes made through tx are applied exactly once. Effects outside
// the database (Redis, HTTP) are at least once: a batch whose transaction
// fails after such an effect is run again, so ProcessBatch must be idempotent.
type GoBackfill interface {
	// Version is the backfill's version, unique among Go and SQL backfills.
	Version() int64
	// Name is a lower-case name of letters, digits and underscores.
	Name() string
	Mode() Mode
	Options() Options
	// ProcessBatch processes the rows whose key lies between b.First and
	// b.Last (inclusive) and returns how many it changed.
	ProcessBatch(ctx context.Context, tx pgx.Tx, b Batch) (int64, error)
}

// GoRevertible is a GoBackfill that can be reverted with "enqueue revert".
type GoRevertible interface {
	GoBackfill
	RevertBatch(ctx context.Context, tx pgx.Tx, b Batch) (int64, error)
}

// GoChecksummer lets a GoBackfill report a checksum of its logic, so that
// status warns when a changed implementation meets an old run. Without it the
// checksum covers name, mode and options only.
type GoChecksummer interface {
	Checksum() string
}

func definitionOf(g GoBackfill) *Definition {
	def := &Definition{
		Version: g.Version(),
		Name:    g.Name(),
		Mode:    g.Mode(),
		Options: g.Options().WithDefaults(),
		Source:  SourceGo,
		Up:      g.ProcessBatch,
	}
	if r, ok := g.(GoRevertible); ok {
		def.Down = r.RevertBatch
	}
	extra := ""
	if c, ok := g.(GoChecksummer); ok {
		extra = c.Checksum()
	}
	// The options as the backfill wrote them, with the defaults it had
	// before the gentle pace: a pace default added in a release does not
	// flag every Go backfill enqueued before it as changed.
	def.Checksum = checksumOf(def.Name, def.Mode, g.Options().withShapeDefaults(), extra)
	return def
}
