package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// The shipped example of seed 003's column rename, examples/rename_email, is
// what the kit writes for its table (accounts: id bigint PRIMARY KEY, email
// text NOT NULL); the same kit runs under live writes in internal/faults.
// UPDATE_EXAMPLES=1 rewrites it.
func TestExamples_RenameEmailIsWhatTheKitWrites(t *testing.T) {
	t.Parallel()
	const version, name = 20260301130000, "rename_email"
	cc := &copyColumn{schema: "public", table: "accounts", key: "id", old: "email", new: "email_address",
		oldType: "text", newType: "text", notNull: true}
	dir := filepath.Join("..", "..", "examples", name)
	for file, want := range map[string]string{
		"20260301130000_rename_email.expand.sql":   cc.expandSQL(version, name),
		"20260301130000_rename_email.sql":          cc.backfillSQL(version, name, false),
		"20260301130000_rename_email.contract.sql": cc.contractSQL(version, name),
	} {
		path := filepath.Join(dir, file)
		if os.Getenv("UPDATE_EXAMPLES") != "" {
			require.NoError(t, os.WriteFile(path, []byte(want), 0o644))
		}
		got, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Equal(t, want, string(got), "%s is not what the kit writes now: UPDATE_EXAMPLES=1 go test ./cmd/enqueue -run Examples", path)
	}
}
