package batches

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const goodBackfill = testHeader + validStatement + "\n"

// Files that look like backfills but miss the pattern are errors, not
// silently skipped: "1_x.SQL" would otherwise never run.
func TestLoadDir_NearMissNamesAreErrors(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"1_x.SQL", "1_x.Sql", "20260101_Fill.sql", "manual/2_x.SQL", "3_fill-prices.sql", "notes.sql"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeBackfill(t, dir, "5_fine.sql", goodBackfill)
			path := writeBackfill(t, dir, name, goodBackfill)
			defs, err := LoadDir(dir)
			require.Nil(t, defs)
			requireFileError(t, err, path, 0, "file name must be <version>_<name>.sql", "20260301120000_fill_prices.sql")
		})
	}
}

// Only names ending in .sql are backfills: backups and editor files are not
// read at all.
func TestLoadDir_IgnoresBackupsOfBackfills(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeBackfill(t, dir, "5_fine.sql", goodBackfill)
	for _, name := range []string{"1_x.sql.bak", "1_x.sql~", "1_x.SQL.orig", "manual/2_x.sql.swp"} {
		writeBackfill(t, dir, name, "not SQL \x00")
	}
	defs, err := LoadDir(dir)
	require.NoError(t, err)
	require.Len(t, defs, 1)
}

// A symbolic link to a backfill file is read, one to a directory is skipped
// like a directory, and a dangling one is an error naming the entry.
func TestLoadDir_LinksAndDirectories(t *testing.T) {
	t.Parallel()
	target := writeBackfill(t, t.TempDir(), "elsewhere.sql", goodBackfill)

	dir := t.TempDir()
	require.NoError(t, os.Symlink(target, filepath.Join(dir, "7_linked.sql")))
	defs, err := LoadDir(dir)
	require.NoError(t, err)
	require.Len(t, defs, 1)
	require.Equal(t, "linked", defs[0].Name)

	require.NoError(t, os.Symlink(t.TempDir(), filepath.Join(dir, "8_to_dir.sql")))
	defs, err = LoadDir(dir)
	require.NoError(t, err)
	require.Len(t, defs, 1)

	dangling := filepath.Join(dir, "9_dangling.sql")
	require.NoError(t, os.Symlink(filepath.Join(t.TempDir(), "gone.sql"), dangling))
	defs, err = LoadDir(dir)
	require.Nil(t, defs)
	requireFileError(t, err, dangling, 0, "no such file")
}

func TestParseFile_NulByte(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		content string
		line    int
	}{
		"header":    {testHeader + "-- batch: 1\x000\n" + validStatement, 3},
		"statement": {testHeader + "\n" + strings.Replace(validStatement, "price", "pri\x00ce", 1), 4},
		"down":      {testHeader + validStatement + "\n-- down\n\x00" + validStatement, 5},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := writeBackfill(t, t.TempDir(), "1_nul.sql", tc.content)
			_, err := ParseFile(path, ModeAuto)
			requireFileError(t, err, path, tc.line, "NUL byte")
		})
	}
}

func TestParseFile_LongLines(t *testing.T) {
	t.Parallel()
	long := "-- " + strings.Repeat("x", 17<<20) + "\n"
	path := writeBackfill(t, t.TempDir(), "1_long.sql", testHeader+"UPDATE orders SET total = 0\n"+long+"WHERE id BETWEEN @first AND @last\n")
	_, err := ParseFile(path, ModeAuto)
	requireFileError(t, err, path, 4, "longer than 1 MiB")

	// Just under the limit is fine.
	fits := "-- " + strings.Repeat("x", maxLineBytes-4) + "\n"
	path = writeBackfill(t, t.TempDir(), "1_fits.sql", testHeader+"UPDATE orders SET total = 0\n"+fits+"WHERE id BETWEEN @first AND @last\n")
	def, err := ParseFile(path, ModeAuto)
	require.NoError(t, err)
	require.Contains(t, def.UpSQL, "xxx")
}
