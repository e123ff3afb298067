package jobs

import (
	"github.com/redis/go-redis/v9"

	"github.com/backfill/backfill/batches"
)

// GoBackfills lists the Go-coded backfills. Both binaries register this same
// list, so that what enqueue records the worker can run. rdb may be nil:
// backfills that need Redis then fail with ErrRedisRequired.
func GoBackfills(rdb *redis.Client) []batches.GoBackfill {
	return []batches.GoBackfill{
		&FeatureFlagsToRedis{Redis: rdb},
	}
}

// NewRegistry returns the SQL files of dir ("" for none) and the Go backfills.
func NewRegistry(dir string, rdb *redis.Client) (*batches.Registry, error) {
	reg, err := batches.NewRegistry(dir)
	if err != nil {
		return nil, err
	}
	if err := reg.Register(GoBackfills(rdb)...); err != nil {
		return nil, err
	}
	return reg, nil
}
