package batches

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// fakeGo is a GoBackfill that does nothing.
type fakeGo struct {
	version int64
	name    string
	mode    Mode
	opts    Options
}

func (f fakeGo) Version() int64   { return f.version }
func (f fakeGo) Name() string     { return f.name }
func (f fakeGo) Mode() Mode       { return f.mode }
func (f fakeGo) Options() Options { return f.opts }
func (f fakeGo) ProcessBatch(context.Context, pgx.Tx, Batch) (int64, error) {
	return 1, nil
}

// fakeRevertible is a fakeGo that can be reverted.
type fakeRevertible struct{ fakeGo }

func (fakeRevertible) RevertBatch(context.Context, pgx.Tx, Batch) (int64, error) { return 2, nil }

// fakeChecksummer is a fakeGo that reports a checksum of its logic.
type fakeChecksummer struct {
	fakeGo
	sum string
}

func (f fakeChecksummer) Checksum() string { return f.sum }

func newFakeGo(version int64, name string) fakeGo {
	return fakeGo{version: version, name: name, mode: ModeAuto, opts: Options{Table: "orders", Key: "id"}}
}

func TestLoadDir_AutoAndManual(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	autoPath := writeBackfill(t, dir, "2_fill_totals.sql", testHeader+validStatement)
	manualPath := writeBackfill(t, dir, "manual/1_repair_prices.sql", testHeader+validStatement+"\n-- down\n"+validStatement)

	defs, err := LoadDir(dir)
	require.NoError(t, err)
	require.Len(t, defs, 2)

	require.Equal(t, int64(1), defs[0].Version)
	require.Equal(t, "repair_prices", defs[0].Name)
	require.Equal(t, ModeManual, defs[0].Mode)
	require.Equal(t, manualPath, defs[0].Source)
	require.NotNil(t, defs[0].Down)

	require.Equal(t, int64(2), defs[1].Version)
	require.Equal(t, "fill_totals", defs[1].Name)
	require.Equal(t, ModeAuto, defs[1].Mode)
	require.Equal(t, autoPath, defs[1].Source)
	require.Nil(t, defs[1].Down)
}

func TestLoadDir_IgnoresOtherFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeBackfill(t, dir, "1_a.sql", testHeader+validStatement)
	writeBackfill(t, dir, "README.md", "# backfills")
	writeBackfill(t, dir, "2_b.sql.orig", "not sql at all")
	writeBackfill(t, dir, "3_c.txt", "-- table: x")
	writeBackfill(t, dir, "manual/notes.txt", "whatever")
	writeBackfill(t, dir, "manual/4_d.sql", testHeader+validStatement)
	// Folders other than manual, and folders named like files, are not read.
	writeBackfill(t, dir, "archive/5_e.sql", "garbage")
	writeBackfill(t, dir, "manual/nested/6_f.sql", "garbage")
	require.NoError(t, os.Mkdir(filepath.Join(dir, "7_g.sql"), 0o755))

	defs, err := LoadDir(dir)
	require.NoError(t, err)
	require.Len(t, defs, 2)
	require.Equal(t, "a", defs[0].Name)
	require.Equal(t, ModeAuto, defs[0].Mode)
	require.Equal(t, "d", defs[1].Name)
	require.Equal(t, ModeManual, defs[1].Mode)
}

func TestLoadDir_MissingDir(t *testing.T) {
	t.Parallel()
	defs, err := LoadDir(filepath.Join(t.TempDir(), "does", "not", "exist"))
	require.NoError(t, err)
	require.Empty(t, defs)
}

func TestLoadDir_EmptyDir(t *testing.T) {
	t.Parallel()
	defs, err := LoadDir(t.TempDir())
	require.NoError(t, err)
	require.Empty(t, defs)
}

func TestLoadDir_OnlyManual(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeBackfill(t, dir, "manual/3_x.sql", testHeader+validStatement)
	defs, err := LoadDir(dir)
	require.NoError(t, err)
	require.Len(t, defs, 1)
	require.Equal(t, ModeManual, defs[0].Mode)
}

func TestLoadDir_DirIsAFile(t *testing.T) {
	t.Parallel()
	path := writeBackfill(t, t.TempDir(), "backfills", "not a folder")
	_, err := LoadDir(path)
	require.Error(t, err)
}

func TestLoadDir_SortedByVersion(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// Lexical order of the names differs from version order.
	for _, name := range []string{"10_j.sql", "9_i.sql", "manual/100_z.sql", "manual/2_b.sql", "1000_k.sql", "30_c.sql", "manual/4_d.sql"} {
		writeBackfill(t, dir, name, testHeader+validStatement)
	}
	defs, err := LoadDir(dir)
	require.NoError(t, err)
	var versions []int64
	for _, d := range defs {
		versions = append(versions, d.Version)
	}
	require.Equal(t, []int64{2, 4, 9, 10, 30, 100, 1000}, versions)
}

func TestLoadDir_InvalidFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeBackfill(t, dir, "1_ok.sql", testHeader+validStatement)
	bad := writeBackfill(t, dir, "manual/2_bad.sql", testHeader+"-- batch: none\n"+validStatement)
	defs, err := LoadDir(dir)
	require.Nil(t, defs)
	requireFileError(t, err, bad, 3, "batch")
}

func TestLoadDir_InvalidFileName(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := writeBackfill(t, dir, "Fill.sql", testHeader+validStatement)
	_, err := LoadDir(dir)
	requireFileError(t, err, bad, 0, "file name")
}

func TestNewRegistry_EmptyDir(t *testing.T) {
	t.Parallel()
	r, err := NewRegistry("")
	require.NoError(t, err)
	require.Empty(t, r.All())
	_, err = r.Get(1)
	require.ErrorIs(t, err, ErrUnknownVersion)
}

func TestNewRegistry_MissingDir(t *testing.T) {
	t.Parallel()
	r, err := NewRegistry(filepath.Join(t.TempDir(), "nope"))
	require.NoError(t, err)
	require.Empty(t, r.All())
}

func TestNewRegistry_LoadsFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeBackfill(t, dir, "1_a.sql", testHeader+validStatement)
	writeBackfill(t, dir, "manual/2_b.sql", testHeader+validStatement)
	r, err := NewRegistry(dir)
	require.NoError(t, err)
	require.Len(t, r.All(), 2)
	b, err := r.Get(2)
	require.NoError(t, err)
	require.Equal(t, "b", b.Name)
	require.Equal(t, ModeManual, b.Mode)
}

func TestNewRegistry_InvalidFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := writeBackfill(t, dir, "1_a.sql", testHeader)
	r, err := NewRegistry(dir)
	require.Nil(t, r)
	requireFileError(t, err, bad, 1, "statement is missing")
}

func TestNewRegistry_DuplicateVersion(t *testing.T) {
	t.Parallel()
	tests := map[string][2]string{
		"AutoAndManual":    {"5_first.sql", "manual/5_second.sql"},
		"TwoAuto":          {"5_first.sql", "5_second.sql"},
		"TwoManual":        {"manual/5_first.sql", "manual/5_second.sql"},
		"LeadingZero":      {"5_first.sql", "005_second.sql"},
		"SameNameBothDirs": {"5_same.sql", "manual/5_same.sql"},
	}
	for name, files := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeBackfill(t, dir, "1_other.sql", testHeader+validStatement)
			a := writeBackfill(t, dir, files[0], testHeader+validStatement)
			b := writeBackfill(t, dir, files[1], testHeader+validStatement)
			r, err := NewRegistry(dir)
			require.Nil(t, r)
			require.Error(t, err)
			require.Contains(t, err.Error(), a)
			require.Contains(t, err.Error(), b)
			require.Contains(t, err.Error(), "version 5")
		})
	}
}

func TestRegistry_Register(t *testing.T) {
	t.Parallel()
	r, err := NewRegistry("")
	require.NoError(t, err)
	plain := newFakeGo(3, "go_plain")
	plain.opts.BatchSize = 50
	revertible := fakeRevertible{newFakeGo(4, "go_revertible")}
	revertible.mode = ModeManual
	require.NoError(t, r.Register(plain, revertible))

	def, err := r.Get(3)
	require.NoError(t, err)
	require.Equal(t, int64(3), def.Version)
	require.Equal(t, "go_plain", def.Name)
	require.Equal(t, ModeAuto, def.Mode)
	require.Equal(t, SourceGo, def.Source)
	require.True(t, def.IsGo())
	require.Empty(t, def.UpSQL)
	require.Empty(t, def.DownSQL)
	require.Equal(t, Options{Table: "orders", Key: "id", BatchSize: 50, DutyCycle: DutyCycleDefault, Partitions: PartitionsDefault, MaxAttempts: MaxAttemptsDefault}, def.Options)
	require.NotNil(t, def.Up)
	require.Nil(t, def.Down)
	n, err := def.Up(context.Background(), nil, Batch{})
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	require.Len(t, def.Checksum, 16)

	def, err = r.Get(4)
	require.NoError(t, err)
	require.Equal(t, ModeManual, def.Mode)
	require.NotNil(t, def.Down)
	n, err = def.Step(DirectionDown)(context.Background(), nil, Batch{})
	require.NoError(t, err)
	require.Equal(t, int64(2), n)
}

func TestRegistry_RegisterAlongsideSQL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeBackfill(t, dir, "2_sql.sql", testHeader+validStatement)
	r, err := NewRegistry(dir)
	require.NoError(t, err)
	require.NoError(t, r.Register(newFakeGo(1, "go_one"), newFakeGo(3, "go_three")))
	all := r.All()
	require.Len(t, all, 3)
	require.Equal(t, []string{"go_one", "sql", "go_three"}, []string{all[0].Name, all[1].Name, all[2].Name})
}

func TestRegistry_RegisterDuplicateOfSQLFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := writeBackfill(t, dir, "7_fill.sql", testHeader+validStatement)
	r, err := NewRegistry(dir)
	require.NoError(t, err)

	err = r.Register(newFakeGo(7, "fill_in_go"))
	require.Error(t, err)
	require.Contains(t, err.Error(), "version 7")
	require.Contains(t, err.Error(), path)
	require.Contains(t, err.Error(), "7_fill")

	def, err := r.Get(7)
	require.NoError(t, err)
	require.False(t, def.IsGo(), "the SQL file must stay registered")
}

func TestRegistry_RegisterDuplicateGo(t *testing.T) {
	t.Parallel()
	r, err := NewRegistry("")
	require.NoError(t, err)
	require.NoError(t, r.Register(newFakeGo(7, "first")))
	err = r.Register(newFakeGo(7, "second"))
	require.Error(t, err)
	require.Contains(t, err.Error(), "version 7")
	require.Contains(t, err.Error(), "7_first")

	// Within one call too.
	r, err = NewRegistry("")
	require.NoError(t, err)
	require.Error(t, r.Register(newFakeGo(8, "a"), newFakeGo(8, "b")))
}

func TestRegistry_RegisterInvalidName(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"", "Fill", "fill-prices", "fill prices", "_fill", "fill.sql", "fill/x", "fill\n", "ü"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r, err := NewRegistry("")
			require.NoError(t, err)
			err = r.Register(newFakeGo(1, name))
			require.Error(t, err)
			require.Contains(t, err.Error(), "name")
			_, err = r.Get(1)
			require.ErrorIs(t, err, ErrUnknownVersion, "an invalid backfill must not be registered")
		})
	}
}

func TestRegistry_RegisterValidNames(t *testing.T) {
	t.Parallel()
	r, err := NewRegistry("")
	require.NoError(t, err)
	require.NoError(t, r.Register(newFakeGo(1, "a"), newFakeGo(2, "2fa"), newFakeGo(3, "fill_prices_v2_")))
}

func TestRegistry_RegisterBadVersion(t *testing.T) {
	t.Parallel()
	for _, v := range []int64{0, -1, -9223372036854775808} {
		r, err := NewRegistry("")
		require.NoError(t, err)
		err = r.Register(newFakeGo(v, "x"))
		require.Error(t, err)
		require.Contains(t, err.Error(), "version must be positive")
	}
}

func TestRegistry_RegisterBadMode(t *testing.T) {
	t.Parallel()
	for _, mode := range []Mode{"", "Auto", "MANUAL", "sometimes"} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			r, err := NewRegistry("")
			require.NoError(t, err)
			g := newFakeGo(1, "x")
			g.mode = mode
			err = r.Register(g)
			require.Error(t, err)
			require.Contains(t, err.Error(), "mode")
			require.Empty(t, r.All())
		})
	}
}

func TestRegistry_RegisterBadOptions(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		opts Options
		want string
	}{
		"NoTable":            {Options{Key: "id"}, "table is missing"},
		"NoKey":              {Options{Table: "orders"}, "key is missing"},
		"NegativeBatch":      {Options{Table: "orders", Key: "id", BatchSize: -1}, "batch"},
		"NegativeRate":       {Options{Table: "orders", Key: "id", Rate: -0.5}, "rate"},
		"NegativePartitions": {Options{Table: "orders", Key: "id", Partitions: -2}, "partitions"},
		"TooManyPartitions":  {Options{Table: "orders", Key: "id", Partitions: 1025}, "partitions"},
		"NegativeAttempts":   {Options{Table: "orders", Key: "id", MaxAttempts: -1}, "attempts"},
		"TooManyAttempts":    {Options{Table: "orders", Key: "id", MaxAttempts: 101}, "attempts"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r, err := NewRegistry("")
			require.NoError(t, err)
			g := newFakeGo(1, "x")
			g.opts = tt.opts
			err = r.Register(g)
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
			require.Contains(t, err.Error(), "1_x")
			require.Empty(t, r.All())
		})
	}
}

func TestRegistry_GetUnknownVersion(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeBackfill(t, dir, "1_a.sql", testHeader+validStatement)
	r, err := NewRegistry(dir)
	require.NoError(t, err)
	require.NoError(t, r.Register(newFakeGo(2, "b")))
	for _, v := range []int64{0, 3, -1, 12345} {
		def, err := r.Get(v)
		require.Nil(t, def)
		require.True(t, errors.Is(err, ErrUnknownVersion), "got %v", err)
	}
	_, err = r.Get(12345)
	require.Contains(t, err.Error(), "12345")
}

func TestRegistry_AllSorted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeBackfill(t, dir, "50_e.sql", testHeader+validStatement)
	writeBackfill(t, dir, "manual/5_b.sql", testHeader+validStatement)
	r, err := NewRegistry(dir)
	require.NoError(t, err)
	require.NoError(t, r.Register(newFakeGo(1000, "g"), newFakeGo(1, "a"), newFakeGo(20, "d"), newFakeGo(10, "c"), newFakeGo(100, "f")))
	var versions []int64
	for _, d := range r.All() {
		versions = append(versions, d.Version)
	}
	require.Equal(t, []int64{1, 5, 10, 20, 50, 100, 1000}, versions)

	// All returns a fresh slice: changing it changes nothing in the registry.
	all := r.All()
	all[0] = nil
	require.NotNil(t, r.All()[0])
}

func TestChecksum_GoBackfills(t *testing.T) {
	t.Parallel()
	sum := func(g GoBackfill) string {
		t.Helper()
		r, err := NewRegistry("")
		require.NoError(t, err)
		require.NoError(t, r.Register(g))
		def, err := r.Get(g.Version())
		require.NoError(t, err)
		return def.Checksum
	}
	base := newFakeGo(1, "x")
	require.Equal(t, sum(base), sum(base))
	// Defaults spelled out are the same options.
	explicit := base
	explicit.opts.BatchSize, explicit.opts.Partitions, explicit.opts.MaxAttempts = BatchSizeDefault, PartitionsDefault, MaxAttemptsDefault
	require.Equal(t, sum(base), sum(explicit))
	// The version is not part of the checksum.
	require.Equal(t, sum(base), sum(newFakeGo(2, "x")))

	manual := base
	manual.mode = ModeManual
	renamed := base
	renamed.name = "y"
	batch := base
	batch.opts.BatchSize = 10
	where := base
	where.opts.Where = "total IS NULL"
	sums := map[string]string{
		"base":     sum(base),
		"manual":   sum(manual),
		"renamed":  sum(renamed),
		"batch":    sum(batch),
		"where":    sum(where),
		"logic v1": sum(fakeChecksummer{base, "v1"}),
		"logic v2": sum(fakeChecksummer{base, "v2"}),
	}
	seen := map[string]string{}
	for name, s := range sums {
		require.Len(t, s, 16)
		if other, dup := seen[s]; dup {
			t.Fatalf("%s and %s have the same checksum %s", name, other, s)
		}
		seen[s] = name
	}
}
