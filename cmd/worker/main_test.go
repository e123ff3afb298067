package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// --version prints the build and exits before connecting anywhere.
func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"--version"}, func(string) string { return "" }, &out, &errOut)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(out.String(), "worker "), out.String())
	require.Contains(t, out.String(), "(go1.")
	require.Contains(t, usage, "--version")
}
