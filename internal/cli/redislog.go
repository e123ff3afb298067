package cli

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// RouteRedisLogs sends go-redis's own messages (dial retries, pool
// trouble), which it otherwise prints to stderr in its own format, to
// logger at warn level: they then honour --log-format and --log-level, and
// repeats are summarised like every other fault.
func RouteRedisLogs(logger *slog.Logger) {
	redis.SetLogger(redisLogger{logger})
}

type redisLogger struct{ logger *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.logger.WarnContext(ctx, "redis client", "error", fmt.Sprintf(format, v...))
}
