package batches_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// Conditions with parentheses, semicolons and comment marks inside literals,
// quoted names and comments are accepted, and PostgreSQL reads them as the
// one expression the parser saw: the batch holds exactly the matching keys.
func TestWhere_TrickyConditionsRunAsOneExpression(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := testdb.New(t)
	testdb.Exec(t, pool, `
CREATE TABLE c (id int PRIMARY KEY, a text NOT NULL, "odd)name" int NOT NULL);
INSERT INTO c SELECT g, CASE g % 4 WHEN 0 THEN ')' WHEN 1 THEN 'it''s (;' ELSE 'x' END, g % 3 FROM generate_series(1, 120) g;
ANALYZE c;`)
	for cond, want := range map[string]int64{
		"(a = ')')":                        30,
		"a = ')' -- a comment ) ; (":       30,
		"$$)$$ = a":                        30,
		`"odd)name" = 1`:                   40,
		"a = 'it''s (;' OR a = E'\\'' ":    30,
		"id > 60 /* ) /* nested ) */ ( */": 60,
		"(a = ')') AND (\"odd)name\" = 0)": 10,
	} {
		t.Run(cond, func(t *testing.T) {
			def, err := batches.ParseSQL("-- table: c\n-- key: id\n-- batch: 1000\n-- partitions: 1\n-- where: " + cond + "\nUPDATE c SET a = a WHERE id BETWEEN @first AND @last;\n")
			require.NoError(t, err)
			def.Version, def.Name, def.Mode, def.Source = 1, "c", batches.ModeAuto, "c.sql"
			tx, err := pool.Begin(ctx)
			require.NoError(t, err)
			defer tx.Rollback(ctx) //nolint:errcheck
			d, err := batches.DryRunTx(ctx, tx, def, batches.DirectionUp)
			require.NoError(t, err)
			require.Equal(t, want, d.Batch.Rows)
		})
	}
}
