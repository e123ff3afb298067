package cli

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRedact_HidesPasswordsInValidAndBrokenStrings(t *testing.T) {
	t.Parallel()
	for _, conn := range []string{
		"postgres://u:s3cretpw@127.0.0.1:5432/x",
		"postgres://u:s3cretpw@127.0.0.1:notaport/x",
		"postgres://u:s3cretpw@[::1/x",
		"postgres://u@127.0.0.1/x?password=s3cretpw&sslmode=disable",
		"host=127.0.0.1 user=u password=s3cretpw dbname=x",
		"host=127.0.0.1 password='s3cretpw' dbname=x",
		"postgres://u:s3cret%40pw@127.0.0.1/x",
		"redis://:s3cretpw@127.0.0.1:6379/0",
	} {
		got := Redact(conn)
		require.NotContains(t, got, "s3cret", conn)
		require.Contains(t, got, "xxxxx", conn)
	}
	require.Equal(t, "postgres://u@127.0.0.1:5432/x", Redact("postgres://u@127.0.0.1/x"))
	require.NotContains(t, redactIn("cannot connect as u with s3cret@pw", "postgres://u:s3cret%40pw@h/x"), "s3cret")
}
