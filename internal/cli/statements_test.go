package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/internal/testdb"
)

// Each way of sending statements reaches the pool's connections, and a
// default_query_exec_mode in the URL wins over all of them. Connected to the
// server itself, StatementsPreparedUnlessPooled keeps statements prepared
// and names no pooler (faults.TestWorker_BehindAPoolerItKeepsNoStatementPrepared
// is the pooler's side).
func TestOpenPool_StatementsFollowThePoolMode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []struct {
		statements Statements
		url        string
		want       pgx.QueryExecMode
	}{
		{StatementsUnnamed, "", pgx.QueryExecModeCacheDescribe},
		{StatementsPrepared, "", pgx.QueryExecModeCacheStatement},
		{StatementsPreparedUnlessPooled, "", pgx.QueryExecModeCacheStatement},
		{StatementsPrepared, "default_query_exec_mode=exec", pgx.QueryExecModeExec},
		{StatementsUnnamed, "default_query_exec_mode=cache_statement", pgx.QueryExecModeCacheStatement},
	} {
		url := testdb.ServerURL()
		if c.url != "" {
			sep := "?"
			if strings.Contains(url, "?") {
				sep = "&"
			}
			url += sep + c.url
		}
		s := Settings{DatabaseURL: url, Statements: c.statements}
		pool, err := s.OpenPool(ctx)
		require.NoError(t, err, url)
		require.Equal(t, c.want, pool.Config().ConnConfig.DefaultQueryExecMode, "statements %d, URL %s", c.statements, url)
		require.Empty(t, s.Pooler, "no pooler between this test and its server")
		// The prepared statement is there on the connection, for the next
		// time.
		conn, err := pool.Acquire(ctx)
		require.NoError(t, err)
		var n int
		require.NoError(t, conn.QueryRow(ctx, `SELECT $1::int + 1`, 41).Scan(&n))
		var prepared int
		require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT $1::int + 1'`,
			pgx.QueryExecModeSimpleProtocol).Scan(&prepared))
		require.Equal(t, c.want == pgx.QueryExecModeCacheStatement, prepared == 1, "statements %d: %d prepared", c.statements, prepared)
		conn.Release()
		pool.Close()
	}
}
