package batches

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// pgxParams returns the distinct named parameters pgx binds in sql, in order
// of first use, as far as they are among candidates; a parameter pgx binds
// that is not a candidate shows up as "<unknown>".
func pgxParams(t testing.TB, sql string, candidates []string) []string {
	t.Helper()
	args := pgx.NamedArgs{}
	for _, c := range candidates {
		args[c] = c
	}
	// pgx's rewriting needs no connection.
	_, bound, err := args.RewriteQuery(context.Background(), nil, sql, nil)
	require.NoError(t, err)
	names := make([]string, 0, len(bound))
	for _, b := range bound {
		if s, ok := b.(string); ok {
			names = append(names, s)
		} else {
			names = append(names, "<unknown>")
		}
	}
	return names
}

func distinctParams(list []string) []string {
	out := []string{}
	seen := map[string]bool{}
	for _, s := range list {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// requireScanMatchesPgx asserts that scanSQL finds exactly the parameters
// pgx's named-argument rewriting binds when the statement runs.
func requireScanMatchesPgx(t testing.TB, sql string) {
	t.Helper()
	params, _ := scanSQL(sql)
	require.Equal(t, distinctParams(params), pgxParams(t, sql, params), "parameters of %q: scanSQL and pgx disagree", sql)
}

func TestScanSQL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		sql        string
		params     []string
		statements int
	}{
		{"Empty", "", nil, 0},
		{"Blank", " \n\t\r\n ", nil, 0},
		{"OnlyLineComment", "-- nothing", nil, 0},
		{"OnlyBlockComment", "/* nothing */", nil, 0},
		{"OnlySemicolons", " ; ;; ", nil, 0},
		{"Simple", "UPDATE t SET x = 1 WHERE id BETWEEN @first AND @last", []string{"first", "last"}, 1},
		{"ParamAtStart", "@first", []string{"first"}, 1},
		{"ParamAtEnd", "SELECT @last", []string{"last"}, 1},
		{"RepeatedParam", "SELECT @first, @first, @last", []string{"first", "first", "last"}, 1},
		{"ParamWithUnderscoreAndDigits", "SELECT @_a1, @b_2", []string{"_a1", "b_2"}, 1},
		{"ParamEndsAtPunctuation", "SELECT (@first)::int,@last+1", []string{"first", "last"}, 1},
		{"ParamAfterIdentifier", "SELECT x@first", []string{"first"}, 1},
		{"TrailingSemicolon", "SELECT @first, @last;", []string{"first", "last"}, 1},
		{"TrailingSemicolons", "SELECT 1;;;", nil, 1},
		{"TrailingSemicolonAndComment", "SELECT 1; -- done\n/* really */", nil, 1},
		{"TwoStatements", "SELECT 1; SELECT 2", nil, 2},
		{"TwoStatementsBothTerminated", "SELECT 1;\nSELECT 2;\n", nil, 2},
		{"ThreeStatements", "SELECT 1;SELECT 2;SELECT 3", nil, 3},
		{"FormFeedIsWhitespace", "SELECT 1;\f\v\r\n\t ", nil, 1},

		{"SemicolonInString", "SELECT ';' || 'a;b'", nil, 1},
		{"SemicolonInQuotedIdentifier", `SELECT 1 AS "a;b"`, nil, 1},
		{"SemicolonInLineComment", "SELECT 1 -- a; b\n", nil, 1},
		{"SemicolonInBlockComment", "SELECT 1 /* ; */", nil, 1},
		{"SemicolonInDollarQuote", "SELECT $$;$$", nil, 1},
		{"StringThenStatement", "SELECT 'a;b'; SELECT 2", nil, 2},
		{"StringIsAStatement", "'x'", nil, 1},

		{"ParamInString", "SELECT '@first', @last", []string{"last"}, 1},
		{"ParamInStringWithDoubledQuote", "SELECT 'it''s @first', @last", []string{"last"}, 1},
		{"DoubledQuoteAtEndOfString", "SELECT 'x''', @first", []string{"first"}, 1},
		{"EmptyString", "SELECT '', @first", []string{"first"}, 1},
		{"ParamInQuotedIdentifier", `SELECT "@first", @last`, []string{"last"}, 1},
		{"ParamInQuotedIdentifierWithDoubledQuote", `SELECT "a""@first", @last`, []string{"last"}, 1},
		{"ParamInLineComment", "SELECT 1 -- @first\n, @last", []string{"last"}, 1},
		{"ParamInLineCommentAtEnd", "SELECT @last -- @first", []string{"last"}, 1},
		{"ParamInBlockComment", "SELECT /* @first */ @last", []string{"last"}, 1},
		{"ParamInMultiLineBlockComment", "SELECT /*\n @first\n*/ @last", []string{"last"}, 1},
		{"ParamInDollarQuote", "SELECT $$ @first $$, @last", []string{"last"}, 1},
		{"ParamInTaggedDollarQuote", "SELECT $fn$ @first $$ @last $fn$, @x", []string{"x"}, 1},
		{"DollarQuoteWithDigitsInTag", "SELECT $a1$ @first $a1$, @last", []string{"last"}, 1},
		{"ParamInUnicodeString", "SELECT U&'@first', @last", []string{"last"}, 1},
		{"ParamInBitString", "SELECT B'@first', X'@first', @last", []string{"last"}, 1},

		{"ContainsOperator", "SELECT tags @> ARRAY['a'] AND id = @first", []string{"first"}, 1},
		{"ContainedByOperator", "SELECT tags <@ ARRAY['a'], @first", []string{"first"}, 1},
		{"AbsoluteValueOperator", "SELECT @ -5, @first", []string{"first"}, 1},
		{"TextSearchOperatorSpaced", "SELECT doc @@ to_tsquery('x'), @first", []string{"first"}, 1},
		{"AtFollowedBySpace", "SELECT @ first", nil, 1},
		{"LoneAt", "SELECT @", nil, 1},

		{"PositionalParameters", "SELECT $1, $2, @first", []string{"first"}, 1},
		{"DollarInIdentifier", "SELECT a$b$ + @first, @last", []string{"first", "last"}, 1},
		{"DollarAfterDigit", "SELECT x1$ + @first", []string{"first"}, 1},

		{"UnterminatedString", "SELECT '@first", nil, 1},
		{"UnterminatedQuotedIdentifier", `SELECT "@first`, nil, 1},
		{"UnterminatedDollarQuote", "SELECT $$ @first", nil, 1},
		{"UnterminatedBlockComment", "/* @first", nil, 0},
		{"LineCommentWithoutNewline", "-- @first", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			params, statements := scanSQL(tt.sql)
			require.Equal(t, tt.params, params)
			require.Equal(t, tt.statements, statements)
			requireScanMatchesPgx(t, tt.sql)
		})
	}
}

// TestScanSQL_LikePgx holds the cases where a simple scanner easily differs
// from pgx's rewriting, which decides what is bound when the statement runs.
func TestScanSQL_LikePgx(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		sql        string
		params     []string
		statements int
	}{
		// E'...' strings end at an unescaped quote: \' does not end them.
		{"EscapeString", `UPDATE t SET note = E'it\'s' WHERE id BETWEEN @first AND @last`, []string{"first", "last"}, 1},
		{"EscapeStringLowerCase", `SELECT e'\' @foo ', @first`, []string{"first"}, 1},
		{"EscapeStringBackslashBackslash", `SELECT E'\\', @first`, []string{"first"}, 1},
		{"EscapeStringSemicolon", `SELECT E'\';' ; `, nil, 1},
		// An identifier ending in e is not an escape-string prefix.
		{"IdentifierEndingInE", `SELECT note'\' , @first`, []string{"first"}, 1},
		// pgx binds @name after @ too: "@@to_tsquery" is "@" and @to_tsquery.
		{"TextSearchOperatorUnspaced", "SELECT doc @@to_tsquery('x'), @first", []string{"to_tsquery", "first"}, 1},
		{"DoubleAtParam", "SELECT @@first", []string{"first"}, 1},
		// Parameter names start with a letter or underscore.
		{"DigitAfterAt", "SELECT @1, @first", []string{"first"}, 1},
		// Block comments nest.
		{"NestedBlockComment", "SELECT /* a /* b */ @first */ @last", []string{"last"}, 1},
		{"NestedBlockCommentSemicolon", "SELECT 1 /* /* */ ; */", nil, 1},
		// A line comment ends at a carriage return too.
		{"LineCommentEndsAtCR", "SELECT 1 -- c\r, @first", []string{"first"}, 1},
		// A $ inside an identifier does not start a dollar quote, also after
		// a non-ASCII letter.
		{"DollarAfterNonASCIIIdentifier", "SELECT é$x$ + @first, $x$", []string{"first"}, 1},
		{"NonASCIIDollarTag", "SELECT $é$ @first $é$, @last", []string{"last"}, 1},
		// After a number, $$ is a dollar quote.
		{"DollarQuoteAfterNumber", "SELECT 1$$ @first $$, @last", []string{"last"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			params, statements := scanSQL(tt.sql)
			require.Equal(t, tt.params, params)
			require.Equal(t, tt.statements, statements)
			requireScanMatchesPgx(t, tt.sql)
		})
	}
}

// The cases of the brief, through ParseSQL: what looks like a parameter but
// is not one neither satisfies nor breaks the check.
func TestParseSQL_ParametersOnlyOutsideLiterals(t *testing.T) {
	t.Parallel()
	accepted := map[string]string{
		"String":              "UPDATE t SET note = '@foo; @bar' WHERE id BETWEEN @first AND @last",
		"QuotedIdentifier":    `UPDATE t SET "@foo" = 1 WHERE id BETWEEN @first AND @last`,
		"LineComment":         "UPDATE t SET x = 1 -- not @foo;\nWHERE id BETWEEN @first AND @last",
		"BlockComment":        "UPDATE t SET x = 1 /* @foo; */ WHERE id BETWEEN @first AND @last",
		"DollarQuote":         "UPDATE t SET body = $$ @foo; $$ WHERE id BETWEEN @first AND @last",
		"TaggedDollarQuote":   "UPDATE t SET body = $b$ @foo; $$ $b$ WHERE id BETWEEN @first AND @last",
		"ContainsOperator":    "UPDATE t SET x = 1 WHERE tags @> '{a}' AND id BETWEEN @first AND @last",
		"TrailingSemicolon":   "UPDATE t SET x = 1 WHERE id BETWEEN @first AND @last;",
		"SemicolonInString":   "UPDATE t SET x = ';' WHERE id BETWEEN @first AND @last;",
		"EscapeString":        `UPDATE t SET note = E'it\'s' WHERE id BETWEEN @first AND @last`,
		"PositionalInComment": "UPDATE t SET x = 1 /* $1 */ WHERE id BETWEEN @first AND @last",
	}
	for name, stmt := range accepted {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			def, err := ParseSQL(testHeader + stmt + "\n")
			require.NoError(t, err)
			require.Equal(t, stmt, def.UpSQL)
		})
	}
	rejected := map[string]string{
		"FirstOnlyInString":       "UPDATE t SET note = '@first' WHERE id <= @last",
		"FirstOnlyInComment":      "UPDATE t SET x = 1 WHERE id <= @last -- and >= @first",
		"FirstOnlyInBlockComment": "UPDATE t SET x = 1 WHERE /* id >= @first AND */ id <= @last",
		"FirstOnlyInIdentifier":   `UPDATE t SET "@first" = 1 WHERE id <= @last`,
		"FirstOnlyInDollarQuote":  "UPDATE t SET x = $$@first$$ WHERE id <= @last",
		"LastOnlyInString":        "UPDATE t SET x = 1 WHERE id >= @first AND note = '@last'",
	}
	for name, stmt := range rejected {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseSQL(testHeader + stmt + "\n")
			var fe *FileError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, 3, fe.Line)
			require.Contains(t, err.Error(), "is missing")
		})
	}
}

// Whatever ParseSQL accepts, pgx binds exactly @first and @last in it.
func TestParseSQL_AcceptedStatementsBindFirstAndLast(t *testing.T) {
	t.Parallel()
	for _, stmt := range []string{
		validStatement,
		"UPDATE t SET note = E'it\\'s' WHERE id BETWEEN @first AND @last",
		"UPDATE t SET x = $$@foo$$ WHERE id >= @first AND id <= @last AND @last > @first",
		"WITH s AS (SELECT id FROM t WHERE id BETWEEN @first AND @last) UPDATE t SET x = 1 FROM s WHERE s.id = t.id",
	} {
		def, err := ParseSQL(testHeader + stmt)
		require.NoError(t, err, stmt)
		_, args, err := pgx.StrictNamedArgs{"first": "1", "last": "9"}.RewriteQuery(context.Background(), nil, def.UpSQL, nil)
		require.NoError(t, err, stmt)
		require.ElementsMatch(t, []any{"1", "9"}, args)
	}
}
