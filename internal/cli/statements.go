package cli

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Statements says how a pool sends its statements.
type Statements int

const (
	// StatementsUnnamed sends every statement as an unnamed prepared
	// statement whose description is cached (pgx's cache_describe): no
	// statement outlives its transaction, so a transaction-pooling PgBouncer
	// works, and repeated statements still skip a round trip. The server
	// parses and plans each statement every time.
	StatementsUnnamed Statements = iota
	// StatementsPrepared keeps each statement prepared on its connection
	// (pgx's cache_statement): the server parses it once per connection
	// (and plans it once where a generic plan serves every batch's keys),
	// which is most of a small batch's bookkeeping. Only where
	// each connection is a session of its own: directly, or through a
	// session-pooling PgBouncer.
	StatementsPrepared
	// StatementsPreparedUnlessPooled is StatementsPrepared, unless the
	// server answers on another port than the URL names (a pooler or a
	// proxy is in between, which may pool by transaction): then
	// StatementsUnnamed, and Settings.Pooler says why.
	StatementsPreparedUnlessPooled
)

// execMode chooses how s's pool sends statements, and says why it fell
// back to unnamed statements ("" when it did not).
func (s *Settings) execMode(ctx context.Context, cfg *pgxpool.Config) (pgx.QueryExecMode, string, error) {
	switch s.Statements {
	case StatementsPrepared:
		return pgx.QueryExecModeCacheStatement, "", nil
	case StatementsPreparedUnlessPooled:
		pooler, err := detectPooler(ctx, cfg.ConnConfig)
		if err != nil || pooler != "" {
			return pgx.QueryExecModeCacheDescribe, pooler, err
		}
		return pgx.QueryExecModeCacheStatement, "", nil
	}
	return pgx.QueryExecModeCacheDescribe, "", nil
}

// detectPooler connects once and says whether the server answers on
// another port than the connection string names: a connection pooler or a
// proxy is in between ("" when not).
func detectPooler(ctx context.Context, cc *pgx.ConnConfig) (string, error) {
	conn, err := pgx.ConnectConfig(ctx, cc.Copy())
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var port int
	// The simple protocol: nothing is left prepared on the server session,
	// which a pooler may hand to another client.
	if err := conn.QueryRow(ctx, `SELECT coalesce(inet_server_port(), current_setting('port')::int)`,
		pgx.QueryExecModeSimpleProtocol).Scan(&port); err != nil {
		return "", err
	}
	if int(cc.Port) == port {
		return "", nil
	}
	return fmt.Sprintf("connected on port %d to a server on port %d: a connection pooler or proxy is in between", cc.Port, port), nil
}
