package batches

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// writeBackfill writes content to dir/name (name may contain a sub-folder,
// such as "manual/2_x.sql") and returns the file's path.
func writeBackfill(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, filepath.FromSlash(name))
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	return path
}

// requireFileError asserts that err is a *FileError for path at line, whose
// message names "path:line:" and contains every one of wants.
func requireFileError(t *testing.T, err error, path string, line int, wants ...string) *FileError {
	t.Helper()
	require.Error(t, err)
	var fe *FileError
	require.True(t, errors.As(err, &fe), "want a *FileError, got %T: %v", err, err)
	require.Equal(t, path, fe.Path, "path of %v", err)
	require.Equal(t, line, fe.Line, "line of %v", err)
	msg := err.Error()
	if line > 0 {
		require.Contains(t, msg, fmt.Sprintf("%s:%d: ", path, line))
	} else {
		require.True(t, strings.HasPrefix(msg, path+": "), "message %q does not start with the path", msg)
	}
	for _, w := range wants {
		require.Contains(t, msg, w)
	}
	require.NotNil(t, fe.Unwrap())
	return fe
}

const validStatement = "UPDATE orders SET total = price * qty WHERE id BETWEEN @first AND @last"

func TestParseSQL_AllHeaderKeys(t *testing.T) {
	t.Parallel()
	def, err := ParseSQL(`-- table: shop.orders
-- key: order_id
-- batch: 250
-- rate: 1500.5
-- where: total IS NULL AND status <> 'void'
-- partitions: 16
-- attempts: 3

UPDATE shop.orders
SET total = price * qty
WHERE order_id BETWEEN @first AND @last;
`)
	require.NoError(t, err)
	require.Equal(t, Options{
		Table:       "shop.orders",
		Key:         "order_id",
		Where:       "total IS NULL AND status <> 'void'",
		BatchSize:   250,
		Rate:        1500.5,
		DutyCycle:   DutyCycleDefault,
		Partitions:  16,
		MaxAttempts: 3,
	}, def.Options)
	require.Equal(t, "UPDATE shop.orders\nSET total = price * qty\nWHERE order_id BETWEEN @first AND @last;", def.UpSQL)
	require.NotNil(t, def.Up)
	require.Empty(t, def.DownSQL)
	require.Nil(t, def.Down)
	require.Nil(t, def.Step(DirectionDown))
	require.NotNil(t, def.Step(DirectionUp))
	// ParseSQL knows nothing of the file: ParseFile fills these in.
	require.Zero(t, def.Version)
	require.Empty(t, def.Name)
	require.Empty(t, def.Source)
}

func TestParseSQL_PlainTable(t *testing.T) {
	t.Parallel()
	def, err := ParseSQL("-- table: orders\n-- key: id\n" + validStatement)
	require.NoError(t, err)
	require.Equal(t, "orders", def.Options.Table)
	require.Equal(t, "id", def.Options.Key)
}

func TestParseSQL_IdentifierCharacters(t *testing.T) {
	t.Parallel()
	def, err := ParseSQL("-- table: _Shop$1.Order_Lines$\n-- key: Line$Id_2\n" + validStatement)
	require.NoError(t, err)
	require.Equal(t, "_Shop$1.Order_Lines$", def.Options.Table)
	require.Equal(t, "Line$Id_2", def.Options.Key)
}

func TestParseSQL_Defaults(t *testing.T) {
	t.Parallel()
	def, err := ParseSQL("-- table: orders\n-- key: id\n" + validStatement)
	require.NoError(t, err)
	require.Equal(t, BatchSizeDefault, def.Options.BatchSize)
	require.Equal(t, PartitionsDefault, def.Options.Partitions)
	require.Equal(t, MaxAttemptsDefault, def.Options.MaxAttempts)
	require.Zero(t, def.Options.Rate)
	require.Empty(t, def.Options.Where)
}

func TestParseSQL_RateZeroIsUnlimited(t *testing.T) {
	t.Parallel()
	def, err := ParseSQL("-- table: orders\n-- key: id\n-- rate: 0\n" + validStatement)
	require.NoError(t, err)
	require.Zero(t, def.Options.Rate)
}

func TestParseSQL_HeaderSpellings(t *testing.T) {
	t.Parallel()
	// Keys are case-insensitive, spaces around ":" and at the ends are optional.
	def, err := ParseSQL("--TABLE:orders\n   --   Key  :   id   \n-- Batch :\t7\t\n" + validStatement)
	require.NoError(t, err)
	require.Equal(t, "orders", def.Options.Table)
	require.Equal(t, "id", def.Options.Key)
	require.Equal(t, 7, def.Options.BatchSize)
}

func TestParseSQL_FreeCommentsInHeader(t *testing.T) {
	t.Parallel()
	def, err := ParseSQL(`-- Fill in the totals of old orders.
--
-- table: orders

-- They were written before totals existed
-- key: id
--------------------------------

` + validStatement)
	require.NoError(t, err)
	require.Equal(t, "orders", def.Options.Table)
	require.Equal(t, "id", def.Options.Key)
	require.Equal(t, validStatement, def.UpSQL, "header comments are not part of the statement")
}

func TestParseSQL_StatementTrimmed(t *testing.T) {
	t.Parallel()
	def, err := ParseSQL("-- table: orders\n-- key: id\n\n\n   \t" + validStatement + "   \n\n\n")
	require.NoError(t, err)
	require.Equal(t, validStatement, def.UpSQL)
}

func TestParseSQL_CommentsInsideStatementKept(t *testing.T) {
	t.Parallel()
	def, err := ParseSQL("-- table: orders\n-- key: id\nUPDATE orders\n-- the whole batch\nSET total = 0\nWHERE id BETWEEN @first AND @last\n")
	require.NoError(t, err)
	require.Equal(t, "UPDATE orders\n-- the whole batch\nSET total = 0\nWHERE id BETWEEN @first AND @last", def.UpSQL)
}

func TestParseSQL_HeaderLikeLineInBodyIsSQL(t *testing.T) {
	t.Parallel()
	// Once the statement has begun, "-- key: value" is a comment of the
	// statement, not a header: it is neither checked nor applied.
	def, err := ParseSQL("-- table: orders\n-- key: id\nUPDATE orders SET total = 0\n-- batch: nonsense\nWHERE id BETWEEN @first AND @last\n")
	require.NoError(t, err)
	require.Equal(t, BatchSizeDefault, def.Options.BatchSize)
	require.Contains(t, def.UpSQL, "-- batch: nonsense")
}

func TestParseSQL_CRLF(t *testing.T) {
	t.Parallel()
	content := "-- table: orders\r\n-- key: id\r\n-- batch: 20\r\n\r\nUPDATE orders SET total = 0\r\nWHERE id BETWEEN @first AND @last;\r\n-- down\r\nUPDATE orders SET total = NULL WHERE id BETWEEN @first AND @last;\r\n"
	def, err := ParseSQL(content)
	require.NoError(t, err)
	require.Equal(t, "orders", def.Options.Table)
	require.Equal(t, "id", def.Options.Key)
	require.Equal(t, 20, def.Options.BatchSize)
	require.NotContains(t, def.UpSQL, "\r")
	require.Equal(t, "UPDATE orders SET total = 0\nWHERE id BETWEEN @first AND @last;", def.UpSQL)
	require.Equal(t, "UPDATE orders SET total = NULL WHERE id BETWEEN @first AND @last;", def.DownSQL)
}

func TestParseSQL_Down(t *testing.T) {
	t.Parallel()
	def, err := ParseSQL(`-- table: orders
-- key: id

UPDATE orders SET total = price * qty
WHERE id BETWEEN @first AND @last;

-- down

  UPDATE orders SET total = NULL
  WHERE id BETWEEN @first AND @last;

`)
	require.NoError(t, err)
	require.Equal(t, "UPDATE orders SET total = price * qty\nWHERE id BETWEEN @first AND @last;", def.UpSQL)
	require.Equal(t, "UPDATE orders SET total = NULL\n  WHERE id BETWEEN @first AND @last;", def.DownSQL)
	require.NotNil(t, def.Up)
	require.NotNil(t, def.Down)
	require.NotNil(t, def.Step(DirectionDown))
	require.NotContains(t, def.UpSQL, "down")
	require.NotContains(t, def.UpSQL, "NULL")
}

func TestParseSQL_DownMarkerSpellings(t *testing.T) {
	t.Parallel()
	for _, marker := range []string{"-- down", "--down", "  --   down  ", "-- down\t"} {
		t.Run(marker, func(t *testing.T) {
			t.Parallel()
			def, err := ParseSQL("-- table: orders\n-- key: id\n" + validStatement + "\n" + marker + "\n" + validStatement + "\n")
			require.NoError(t, err)
			require.NotNil(t, def.Down)
			require.Equal(t, validStatement, def.DownSQL)
			require.Equal(t, validStatement, def.UpSQL)
		})
	}
}

func TestParseSQL_DownIsNotAHeaderKey(t *testing.T) {
	t.Parallel()
	// "-- downgrade" and "-- down below" are free comments, not the marker.
	def, err := ParseSQL("-- table: orders\n-- key: id\n-- downgrade with care\n" + validStatement + "\n-- down below\n")
	require.NoError(t, err)
	require.Nil(t, def.Down)
	require.Contains(t, def.UpSQL, "-- down below")
}

func TestParseSQL_ErrorsHaveNoPath(t *testing.T) {
	t.Parallel()
	_, err := ParseSQL("-- table: orders\n-- key: id\n-- colour: blue\n" + validStatement)
	var fe *FileError
	require.True(t, errors.As(err, &fe))
	require.Empty(t, fe.Path)
	require.Equal(t, 3, fe.Line)
	require.True(t, strings.HasPrefix(err.Error(), ":3: "), "got %q", err.Error())
}

func TestParseFile_Valid(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := writeBackfill(t, dir, "20260301120000_fill_prices.sql", "-- table: orders\n-- key: id\n-- batch: 10\n"+validStatement+"\n")

	def, err := ParseFile(path, ModeManual)
	require.NoError(t, err)
	require.Equal(t, int64(20260301120000), def.Version)
	require.Equal(t, "fill_prices", def.Name)
	require.Equal(t, ModeManual, def.Mode)
	require.Equal(t, path, def.Source)
	require.False(t, def.IsGo())
	require.Equal(t, "20260301120000_fill_prices", def.Label())
	require.Equal(t, 10, def.Options.BatchSize)
	require.Equal(t, validStatement, def.UpSQL)
	require.Len(t, def.Checksum, 16)
}

func TestParseFile_LeadingZerosInVersion(t *testing.T) {
	t.Parallel()
	path := writeBackfill(t, t.TempDir(), "007_x.sql", "-- table: t\n-- key: id\n"+validStatement)
	def, err := ParseFile(path, ModeAuto)
	require.NoError(t, err)
	require.Equal(t, int64(7), def.Version)
	require.Equal(t, "x", def.Name)
}

func TestParseFile_Missing(t *testing.T) {
	t.Parallel()
	_, err := ParseFile(filepath.Join(t.TempDir(), "1_gone.sql"), ModeAuto)
	require.Error(t, err)
	require.True(t, errors.Is(err, fs.ErrNotExist), "got %v", err)
}

// testHeader is a valid two-line header (table on line 1, key on line 2).
const testHeader = "-- table: orders\n-- key: id\n"

func TestParseFile_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		content string
		line    int
		wants   []string
	}{
		{"UnknownKey", testHeader + "-- colour: blue\n" + validStatement, 3, []string{`unknown header key "colour"`}},
		{"UnknownKeyBeforeTable", "-- note: see ticket 12\n" + testHeader + validStatement, 1, []string{`unknown header key "note"`}},
		{"KeyTwice", testHeader + "-- batch: 10\n-- KEY: other_id\n" + validStatement, 4, []string{`"key" given twice (first on line 2)`}},
		{"TableTwice", testHeader + "-- table: orders\n" + validStatement, 3, []string{`"table" given twice (first on line 1)`}},
		{"BatchTwice", testHeader + "-- batch: 10\n\n-- batch: 10\n" + validStatement, 5, []string{`"batch" given twice (first on line 3)`}},
		{"MissingTable", "-- key: id\n" + validStatement, 1, []string{"table", "missing"}},
		{"MissingKey", "-- table: orders\n" + validStatement, 1, []string{"key", "missing"}},
		{"MissingBoth", validStatement, 1, []string{"missing"}},
		{"KeyAfterStatementStarted", "-- table: orders\n" + validStatement + "\n-- key: id\n", 1, []string{"key", "missing"}},

		{"BatchNotNumber", testHeader + "-- batch: lots\n" + validStatement, 3, []string{"batch", `"lots"`}},
		{"BatchZero", testHeader + "-- batch: 0\n" + validStatement, 3, []string{"batch", `"0"`}},
		{"BatchNegative", testHeader + "-- batch: -5\n" + validStatement, 3, []string{"batch", `"-5"`}},
		{"BatchFraction", testHeader + "-- batch: 2.5\n" + validStatement, 3, []string{"batch"}},
		{"BatchEmpty", testHeader + "-- batch:\n" + validStatement, 3, []string{"batch"}},
		{"BatchTooBig", testHeader + "-- batch: 99999999999999999999999\n" + validStatement, 3, []string{"batch"}},
		{"PartitionsNotNumber", testHeader + "-- partitions: many\n" + validStatement, 3, []string{"partitions", `"many"`}},
		{"PartitionsZero", testHeader + "-- partitions: 0\n" + validStatement, 3, []string{"partitions"}},
		{"PartitionsNegative", testHeader + "-- partitions: -1\n" + validStatement, 3, []string{"partitions"}},
		{"PartitionsTooMany", testHeader + "-- partitions: 1025\n" + validStatement, 3, []string{"partitions", "1025"}},
		{"AttemptsNotNumber", testHeader + "-- attempts: x\n" + validStatement, 3, []string{"attempts", `"x"`}},
		{"AttemptsZero", testHeader + "-- attempts: 0\n" + validStatement, 3, []string{"attempts"}},
		{"AttemptsNegative", testHeader + "-- attempts: -3\n" + validStatement, 3, []string{"attempts"}},
		{"AttemptsTooMany", testHeader + "-- attempts: 101\n" + validStatement, 3, []string{"attempts", "101"}},
		{"RateNegative", testHeader + "-- rate: -1\n" + validStatement, 3, []string{"rate", `"-1"`}},
		{"RateNotNumber", testHeader + "-- rate: fast\n" + validStatement, 3, []string{"rate", `"fast"`}},
		{"RateNaN", testHeader + "-- rate: NaN\n" + validStatement, 3, []string{"rate", `"NaN"`}},
		{"RateInf", testHeader + "-- rate: +Inf\n" + validStatement, 3, []string{"rate", `"+Inf"`}},
		{"RateEmpty", testHeader + "-- rate:\n" + validStatement, 3, []string{"rate"}},
		{"WhereEmpty", testHeader + "-- where:   \n" + validStatement, 3, []string{"where", "empty"}},

		{"TableInjection", "-- table: orders; drop table x\n-- key: id\n" + validStatement, 1, []string{"table", "not a valid name"}},
		{"TableThreeParts", "-- table: a.b.c\n-- key: id\n" + validStatement, 1, []string{"table", "too many dots"}},
		{"TableEmptyPart", "-- table: shop.\n-- key: id\n" + validStatement, 1, []string{"table", "not a valid name"}},
		{"TableLeadingDot", "-- table: .orders\n-- key: id\n" + validStatement, 1, []string{"table", "not a valid name"}},
		{"TableStartsWithDigit", "-- table: 1orders\n-- key: id\n" + validStatement, 1, []string{"table", "not a valid name"}},
		{"TableQuoted", "-- table: \"Orders\"\n-- key: id\n" + validStatement, 1, []string{"table", "not a valid name"}},
		{"TableSpace", "-- table: my orders\n-- key: id\n" + validStatement, 1, []string{"table", "not a valid name"}},
		{"TableEmpty", "-- table:\n-- key: id\n" + validStatement, 1, []string{"table", "not a valid name"}},
		{"KeyQualified", "-- table: orders\n-- key: orders.id\n" + validStatement, 2, []string{"key", "too many dots"}},
		{"KeyInjection", "-- table: orders\n-- key: id) OR (true\n" + validStatement, 2, []string{"key", "not a valid name"}},
		{"KeyHyphen", "-- table: orders\n-- key: order-id\n" + validStatement, 2, []string{"key", "not a valid name"}},

		{"EmptyBody", testHeader, 1, []string{"statement is missing"}},
		{"BodyOnlyComments", testHeader + "\n-- nothing to do yet\n\n", 1, []string{"statement is missing"}},
		{"EmptyFile", "", 1, []string{"missing"}},
		{"NoFirst", testHeader + "UPDATE orders SET total = 0 WHERE id <= @last", 3, []string{"@first is missing"}},
		{"NoLast", testHeader + "UPDATE orders SET total = 0 WHERE id >= @first", 3, []string{"@last is missing"}},
		{"NoParams", testHeader + "UPDATE orders SET total = 0", 3, []string{"@first is missing"}},
		{"OtherParam", testHeader + "UPDATE orders SET total = @foo WHERE id BETWEEN @first AND @last", 3, []string{"@foo", "only @first and @last"}},
		{"PositionalOnly", testHeader + "UPDATE orders SET total = 0 WHERE id BETWEEN $1 AND $2", 3, []string{"@first is missing"}},
		{"CaseSensitiveParams", testHeader + "UPDATE orders SET total = 0 WHERE id BETWEEN @First AND @LAST", 3, []string{"@First"}},
		{"ParamPrefix", testHeader + "UPDATE orders SET total = 0 WHERE id BETWEEN @first_id AND @last", 3, []string{"@first_id"}},
		{"TwoStatements", testHeader + "\nUPDATE orders SET total = 0 WHERE id BETWEEN @first AND @last;\nDELETE FROM carts WHERE id BETWEEN @first AND @last;\n", 4, []string{"only one statement"}},
		{"TwoStatementsOneLine", testHeader + "SELECT 1; " + validStatement, 3, []string{"only one statement"}},
		{"StatementLineAfterComments", testHeader + "\n-- a free comment\n\n" + "UPDATE orders SET total = 0\nWHERE id < @last", 6, []string{"@first is missing"}},
		{"OnlySemicolon", testHeader + ";\n", 3, []string{"@first is missing"}},

		{"SecondDown", testHeader + validStatement + "\n-- down\n" + validStatement + "\n-- down\n" + validStatement, 6, []string{"second", "down"}},
		{"DownTwiceInARow", testHeader + validStatement + "\n--down\n-- down\n", 5, []string{"second", "down"}},
		{"EmptyDown", testHeader + validStatement + "\n\n-- down\n\n", 5, []string{"down statement is missing"}},
		{"DownOnlyComments", testHeader + validStatement + "\n-- down\n-- cannot be undone\n", 4, []string{"down statement is missing"}},
		{"DownNoLast", testHeader + validStatement + "\n-- down\n\nUPDATE orders SET total = NULL WHERE id >= @first\n", 6, []string{"down statement", "@last is missing"}},
		{"DownNoFirst", testHeader + validStatement + "\n-- down\nUPDATE orders SET total = NULL WHERE id <= @last\n", 5, []string{"down statement", "@first is missing"}},
		{"DownOtherParam", testHeader + validStatement + "\n-- down\nUPDATE orders SET total = @old WHERE id BETWEEN @first AND @last\n", 5, []string{"down statement uses @old"}},
		{"DownTwoStatements", testHeader + validStatement + "\n-- down\n" + validStatement + ";\n" + validStatement + "\n", 5, []string{"down statement", "only one statement"}},
		{"DownWithoutUp", testHeader + "-- down\n" + validStatement, 1, []string{"statement is missing"}},
		{"BadUpBeforeBadDown", testHeader + "UPDATE orders SET total = 0 WHERE id >= @first\n-- down\nSELECT 1", 3, []string{"@last is missing"}},
		{"HeaderErrorBeforeStatementError", testHeader + "-- batch: 0\nSELECT 1", 3, []string{"batch"}},
		{"InvalidUTF8", testHeader + "UPDATE orders SET note = '\xff\xfe' WHERE id BETWEEN @first AND @last", 3, []string{"UTF-8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeBackfill(t, t.TempDir(), "1_bad.sql", tt.content)
			def, err := ParseFile(path, ModeAuto)
			require.Nil(t, def)
			requireFileError(t, err, path, tt.line, tt.wants...)
		})
	}
}

func TestParseFile_BadFileNames(t *testing.T) {
	t.Parallel()
	content := testHeader + validStatement
	for _, name := range []string{
		"fill.sql",                   // no version
		"_fill.sql",                  // empty version
		"1_Fill.sql",                 // upper case
		"1_FILL.sql",                 // upper case
		"0_x.sql",                    // version zero
		"000_x.sql",                  // version zero, spelled long
		"1_.sql",                     // no name
		"1-fill.sql",                 // wrong separator
		"1_fill-prices.sql",          // hyphen in name
		"1_fill prices.sql",          // space in name
		"1_fill.SQL",                 // upper-case extension
		"1_fill.sql.bak",             // not a .sql file
		"-1_fill.sql",                // negative version
		"v1_fill.sql",                // letter in version
		"1_x.y.sql",                  // dot in name
		"99999999999999999999_x.sql", // beyond int64
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := writeBackfill(t, t.TempDir(), name, content)
			def, err := ParseFile(path, ModeAuto)
			require.Nil(t, def)
			fe := requireFileError(t, err, path, 0)
			require.True(t, strings.Contains(fe.Error(), "version") || strings.Contains(fe.Error(), "file name"), "got %q", fe.Error())
		})
	}
}

func TestParseFile_GoodFileNames(t *testing.T) {
	t.Parallel()
	content := testHeader + validStatement
	for name, want := range map[string]struct {
		version int64
		name    string
	}{
		"1_x.sql":                          {1, "x"},
		"9223372036854775807_max.sql":      {9223372036854775807, "max"},
		"20260301120000_fill_prices_2.sql": {20260301120000, "fill_prices_2"},
		"5_2fa_backfill.sql":               {5, "2fa_backfill"},
		"5_a__b_.sql":                      {5, "a__b_"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := writeBackfill(t, t.TempDir(), name, content)
			def, err := ParseFile(path, ModeAuto)
			require.NoError(t, err)
			require.Equal(t, want.version, def.Version)
			require.Equal(t, want.name, def.Name)
		})
	}
}

func TestChecksum_SameContentSameChecksum(t *testing.T) {
	t.Parallel()
	content := testHeader + validStatement + "\n"
	a, err := ParseFile(writeBackfill(t, t.TempDir(), "1_a.sql", content), ModeAuto)
	require.NoError(t, err)
	// A different directory and even a different name or version: the
	// checksum covers the content and mode.
	b, err := ParseFile(writeBackfill(t, t.TempDir(), "2_b.sql", content), ModeAuto)
	require.NoError(t, err)
	require.Equal(t, a.Checksum, b.Checksum)
	require.Regexp(t, `^[0-9a-f]{16}$`, a.Checksum)
}

func TestChecksum_ChangedContentChangesChecksum(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base, err := ParseFile(writeBackfill(t, dir, "1_a.sql", testHeader+validStatement+"\n"), ModeAuto)
	require.NoError(t, err)
	for name, content := range map[string]string{
		"statement": testHeader + strings.Replace(validStatement, "price * qty", "price * qty * 2", 1) + "\n",
		"header":    testHeader + "-- batch: 5\n" + validStatement + "\n",
		"down":      testHeader + validStatement + "\n-- down\n" + validStatement + "\n",
		"comment":   "-- why\n" + testHeader + validStatement + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			def, err := ParseFile(writeBackfill(t, t.TempDir(), "1_a.sql", content), ModeAuto)
			require.NoError(t, err)
			require.NotEqual(t, base.Checksum, def.Checksum)
		})
	}
}

func TestChecksum_ManualAndAutoDiffer(t *testing.T) {
	t.Parallel()
	path := writeBackfill(t, t.TempDir(), "1_a.sql", testHeader+validStatement+"\n")
	auto, err := ParseFile(path, ModeAuto)
	require.NoError(t, err)
	manual, err := ParseFile(path, ModeManual)
	require.NoError(t, err)
	require.NotEqual(t, auto.Checksum, manual.Checksum)
	require.Equal(t, auto.UpSQL, manual.UpSQL)
}
