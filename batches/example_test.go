package batches_test

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/backfill/backfill/batches"
)

// A backfill file: header keys, the statement with @first and @last, and an
// optional revert after "-- down".
func ExampleParseSQL() {
	def, err := batches.ParseSQL(`-- Fill the new column price_eur_cents.
-- table: orders
-- key: id
-- batch: 5000
-- rate: 20000
-- where: price_eur_cents IS NULL
UPDATE orders SET price_eur_cents = price_cents * 92 / 100
WHERE id BETWEEN @first AND @last AND price_eur_cents IS NULL;
-- down
UPDATE orders SET price_eur_cents = NULL WHERE id BETWEEN @first AND @last;
`)
	if err != nil {
		fmt.Println(err)
		return
	}
	o := def.Options
	fmt.Printf("table %s, key %s, batch %d, rate %g, partitions %d, attempts %d\n", o.Table, o.Key, o.BatchSize, o.Rate, o.Partitions, o.MaxAttempts)
	fmt.Printf("where %q, revertible %v\n", o.Where, def.Down != nil)

	// A condition that would escape the batch's key range is refused.
	_, err = batches.ParseSQL("-- table: orders\n-- key: id\n-- where: 1=1) OR (1=1\nUPDATE orders SET n = 1 WHERE id BETWEEN @first AND @last;\n")
	fmt.Println(err != nil)
	// Output:
	// table orders, key id, batch 5000, rate 20000, partitions 8, attempts 5
	// where "price_eur_cents IS NULL", revertible true
	// true
}

// touchUsers is a Go backfill: the same version space and semantics as SQL
// files, with the batch's transaction and bounds in ProcessBatch.
type touchUsers struct{}

func (touchUsers) Version() int64     { return 20260401000000 }
func (touchUsers) Name() string       { return "touch_users" }
func (touchUsers) Mode() batches.Mode { return batches.ModeManual }
func (touchUsers) Options() batches.Options {
	return batches.Options{Table: "users", Key: "id", BatchSize: 500}
}
func (touchUsers) ProcessBatch(ctx context.Context, tx pgx.Tx, b batches.Batch) (int64, error) {
	tag, err := tx.Exec(ctx, `UPDATE users SET touched_at = now() WHERE id BETWEEN $1 AND $2`, b.First, b.Last)
	return tag.RowsAffected(), err
}

// Go backfills are registered explicitly beside the SQL files of a
// directory; the registry refuses two definitions of one version.
func ExampleRegistry_Register() {
	reg, err := batches.NewRegistry("testdata/no-such-dir")
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := reg.Register(touchUsers{}); err != nil {
		fmt.Println(err)
		return
	}
	def, err := reg.Get(20260401000000)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(def.Label(), def.Mode, def.Source, def.Options.BatchSize, def.Options.Partitions)
	fmt.Println(reg.Register(touchUsers{}) != nil)
	// Output:
	// 20260401000000_touch_users manual go 500 8
	// true
}
