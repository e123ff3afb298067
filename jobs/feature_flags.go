package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/backfill/backfill/batches"
)

// Where FeatureFlagsToRedis writes: one hash of all flags, and a channel that
// announces each one.
const (
	FeatureFlagsKey     = "feature_flags"
	FeatureFlagsChannel = "feature_flags"
)

// ErrRedisRequired is returned by Go backfills that write to Redis when the
// worker was started without a Redis URL.
var ErrRedisRequired = errors.New("this backfill writes to Redis: start the worker with --redis-url or REDIS_URL")

// FeatureFlagsToRedis copies the feature_flags table into Redis and announces
// every flag on a channel, so that services learn of it (seed example 3). It
// is manual: run it with "enqueue run 20260301120200".
//
// Redis is outside the batch's transaction, so a batch may be written twice
// when its transaction fails after the writes: HSET of the same value is
// idempotent, and subscribers must treat a message as the flag's current
// value, not as a change.
type FeatureFlagsToRedis struct {
	Redis *redis.Client
	// Key and Channel default to FeatureFlagsKey and FeatureFlagsChannel.
	Key, Channel string
}

// FlagMessage is what FeatureFlagsToRedis publishes for each flag.
type FlagMessage struct {
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
}

func (*FeatureFlagsToRedis) Version() int64     { return 20260301120200 }
func (*FeatureFlagsToRedis) Name() string       { return "feature_flags_to_redis" }
func (*FeatureFlagsToRedis) Mode() batches.Mode { return batches.ModeManual }
func (*FeatureFlagsToRedis) Checksum() string   { return "hset+publish/v1" }

func (*FeatureFlagsToRedis) Options() batches.Options {
	return batches.Options{Table: "feature_flags", Key: "id", BatchSize: 100, Partitions: 1}
}

// ProcessBatch reads the batch's flags and writes them in one pipeline.
func (f *FeatureFlagsToRedis) ProcessBatch(ctx context.Context, tx pgx.Tx, b batches.Batch) (int64, error) {
	if f.Redis == nil {
		return 0, ErrRedisRequired
	}
	rows, err := tx.Query(ctx, `SELECT name, enabled FROM feature_flags WHERE id BETWEEN $1 AND $2 ORDER BY id`, b.First, b.Last)
	if err != nil {
		return 0, err
	}
	flags, err := pgx.CollectRows(rows, pgx.RowToStructByPos[FlagMessage])
	if err != nil {
		return 0, err
	}
	pipe := f.Redis.TxPipeline()
	for _, fl := range flags {
		msg, err := json.Marshal(fl)
		if err != nil {
			return 0, err
		}
		pipe.HSet(ctx, cmp.Or(f.Key, FeatureFlagsKey), fl.Name, fmt.Sprint(fl.Enabled))
		pipe.Publish(ctx, cmp.Or(f.Channel, FeatureFlagsChannel), msg)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("writing flags to Redis: %w", err)
	}
	return int64(len(flags)), nil
}
