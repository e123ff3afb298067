package batches

import (
	"context"
	"errors"
	"math/big"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

var parseSQLSeeds = []string{
	// valid
	testHeader + validStatement,
	testHeader + validStatement + ";\n",
	"-- table: shop.orders\n-- key: id\n-- batch: 5\n-- rate: 2.5\n-- where: total IS NULL\n-- partitions: 3\n-- attempts: 2\n\n" + validStatement + "\n-- down\n" + validStatement + "\n",
	"-- a free comment\n" + testHeader + "UPDATE t SET s = 'it''s @foo;' /* @bar */ WHERE id BETWEEN @first AND @last -- @baz\n",
	testHeader + "UPDATE t SET s = $q$ @foo; $q$, e = E'\\' @x ' WHERE id BETWEEN @first AND @last",
	testHeader + "UPDATE t SET x = 1 WHERE tags @> '{a}' AND id BETWEEN @first AND @last\r\n",
	// invalid
	"",
	testHeader,
	testHeader + "-- down\n",
	testHeader + validStatement + "\n-- down\n",
	testHeader + validStatement + "\n-- down\n" + validStatement + "\n-- down\n",
	testHeader + "-- batch: 0\n" + validStatement,
	testHeader + "-- rate: NaN\n" + validStatement,
	testHeader + "-- colour: blue\n" + validStatement,
	"-- table: a.b.c\n-- key: id\n" + validStatement,
	testHeader + "SELECT 1; " + validStatement,
	testHeader + "UPDATE t SET x = @foo WHERE id BETWEEN @first AND @last",
	testHeader + "UPDATE t SET x = '@first' WHERE id <= @last",
	testHeader + "UPDATE t SET x = 1 /* /* */ @first */ WHERE id <= @last",
	testHeader + "UPDATE t SET x = doc @@first WHERE id <= @last",
	testHeader + "\xff" + validStatement,
	testHeader + "-- where: 1=1) OR (1=1\n" + validStatement,
	testHeader + "-- where: (a = ')')\n-- down_where: a = 1 -- comment )\n" + validStatement,
	testHeader + "-- where: $$)$$ = x\n-- down_where: \"odd)name\" = 1\n" + validStatement,
	testHeader + "-- where: a=1; DROP TABLE x\n" + validStatement,
	testHeader + "-- where: /* ( */ a = 1 /* open\n" + validStatement,
	testHeader + "-- batch: 1000001\n-- rate: 1e-12\n" + validStatement,
	testHeader + "-- lock_timeout: 2s\n-- statement_timeout: 30s\n" + validStatement,
	testHeader + "-- lock_timeout: 0\n" + validStatement,
	testHeader + "UPDATE t SET x = '\x00' WHERE id BETWEEN @first AND @last",
}

// FuzzParseSQL checks that ParseSQL never panics, fails only with a
// *FileError, and that whatever it accepts is one statement in which pgx
// binds exactly @first and @last.
func FuzzParseSQL(f *testing.F) {
	for _, s := range parseSQLSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, content string) {
		def, err := ParseSQL(content)
		if err != nil {
			require.Nil(t, def)
			var fe *FileError
			require.True(t, errors.As(err, &fe), "want a *FileError, got %T: %v", err, err)
			require.Empty(t, fe.Path)
			require.GreaterOrEqual(t, fe.Line, 1, "%v", err)
			require.LessOrEqual(t, fe.Line, max(1, strings.Count(content, "\n")+1), "%v", err)
			return
		}
		require.Contains(t, def.UpSQL, "@first")
		require.Contains(t, def.UpSQL, "@last")
		require.NotNil(t, def.Up)
		require.NoError(t, def.Options.validate())
		require.Equal(t, def.Options, def.Options.WithDefaults())
		requireOneStatementBindingFirstAndLast(t, def.UpSQL)
		if def.Down != nil {
			require.Contains(t, def.DownSQL, "@first")
			require.Contains(t, def.DownSQL, "@last")
			requireOneStatementBindingFirstAndLast(t, def.DownSQL)
		} else {
			require.Empty(t, def.DownSQL)
		}
	})
}

func requireOneStatementBindingFirstAndLast(t *testing.T, sql string) {
	t.Helper()
	require.Equal(t, strings.TrimSpace(sql), sql)
	_, statements := scanSQL(sql)
	require.Equal(t, 1, statements, "%q", sql)
	_, args, err := pgx.StrictNamedArgs{"first": "F", "last": "L"}.RewriteQuery(context.Background(), nil, sql, nil)
	require.NoError(t, err, "%q", sql)
	require.ElementsMatch(t, []any{"F", "L"}, args, "%q", sql)
}

// FuzzScanSQL checks that scanSQL finds the parameters pgx binds.
func FuzzScanSQL(f *testing.F) {
	for _, s := range []string{
		validStatement,
		"SELECT '@a', \"@b\", $$@c$$, $t$@d$t$, E'\\'@e', /* @f /* @g */ @h */ @i -- @j\n@k; SELECT @l",
		"SELECT x @> y, a@@b, @1, @_x, é$t$ @m $t$",
		"SELECT 1 -- c\r@n",
		"SELECT note'\\' , @first",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		if !utf8.ValidString(sql) {
			t.Skip("pgx stops rewriting at invalid UTF-8; ParseSQL rejects it")
		}
		params, statements := scanSQL(sql)
		require.GreaterOrEqual(t, statements, 0)
		if len(params) > 0 {
			require.GreaterOrEqual(t, statements, 1)
		}
		requireScanMatchesPgx(t, sql)
	})
}

// FuzzSplitIntegers checks the bounds of any int64 range.
func FuzzSplitIntegers(f *testing.F) {
	f.Add(int64(1), int64(3), uint16(8))
	f.Add(int64(-9223372036854775808), int64(9223372036854775807), uint16(1024))
	f.Add(int64(0), int64(0), uint16(2))
	f.Fuzz(func(t *testing.T, a, b int64, n uint16) {
		if a > b {
			a, b = b, a
		}
		lo, hi := big.NewInt(a), big.NewInt(b)
		got := splitIntegers(lo.String(), hi.String(), int(n))
		requireBounds(t, got, lo, hi, parseDecimal)
		require.LessOrEqual(t, len(got), max(0, int(n)-1))
		if n > 1 && new(big.Int).Sub(hi, lo).Cmp(big.NewInt(int64(n))) >= 0 {
			require.Len(t, got, int(n)-1)
		}
	})
}
