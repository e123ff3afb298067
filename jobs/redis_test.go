package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// failOnce fails the first batch after its Redis writes: the batch runs twice
// and Redis sees its flags twice, which is the at-least-once contract.
type failOnce struct {
	*FeatureFlagsToRedis
	failed bool
}

func (f *failOnce) ProcessBatch(ctx context.Context, tx pgx.Tx, b batches.Batch) (int64, error) {
	n, err := f.FeatureFlagsToRedis.ProcessBatch(ctx, tx, b)
	if err == nil && !f.failed {
		f.failed = true
		return 0, errors.New("injected failure after the Redis writes")
	}
	return n, err
}

func TestFeatureFlagsToRedis_WritesAndAnnouncesEveryFlag(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testdb.Exec(t, b.pool, `
CREATE TABLE feature_flags (id bigint PRIMARY KEY, name text UNIQUE NOT NULL, enabled boolean NOT NULL);
INSERT INTO feature_flags VALUES (1, '2fa_sms', true), (2, 'notifications_beta', false), (3, 'pagination', true);
INSERT INTO feature_flags SELECT g, 'flag_' || g, g % 2 = 0 FROM generate_series(4, 250) g;
ANALYZE feature_flags;`)
	rdb := newRedis(t)
	suffix := fmt.Sprint(time.Now().UnixNano())
	flags := &failOnce{FeatureFlagsToRedis: &FeatureFlagsToRedis{Redis: rdb, Key: "test_flags_" + suffix, Channel: "test_flags_" + suffix}}
	t.Cleanup(func() { rdb.Del(context.Background(), flags.Key) })

	sub := rdb.Subscribe(context.Background(), flags.Channel)
	t.Cleanup(func() { sub.Close() })
	_, err := sub.Receive(context.Background()) // the subscription is live
	require.NoError(t, err)

	enq := b.load(t, flags)
	res, err := enq.Pending(context.Background())
	require.NoError(t, err)
	require.Empty(t, res.Enqueued, "a manual backfill is not enqueued by pending")
	_, err = enq.Run(context.Background(), 20260301120200, false)
	require.NoError(t, err)
	b.startWorker(t, WorkerConfig{Concurrency: 2})
	st := b.waitState(t, 20260301120200, batches.StateCompleted, 60*time.Second)
	require.Equal(t, int64(250), st.RowsDone)

	// Every flag is in the hash with its value.
	hash, err := rdb.HGetAll(context.Background(), flags.Key).Result()
	require.NoError(t, err)
	require.Len(t, hash, 250)
	require.Equal(t, "true", hash["2fa_sms"])
	require.Equal(t, "false", hash["notifications_beta"])
	require.Equal(t, "true", hash["flag_4"])

	// The subscriber heard of every flag: at least once, and the first batch
	// (100 flags) twice because it failed after publishing.
	heard := map[string]int{}
	msgs := sub.Channel()
	for total := 0; total < 350; total++ {
		select {
		case m := <-msgs:
			var fm FlagMessage
			require.NoError(t, json.Unmarshal([]byte(m.Payload), &fm))
			require.Equal(t, hash[fm.Name], fmt.Sprint(fm.Enabled))
			heard[fm.Name]++
		case <-time.After(10 * time.Second):
			t.Fatalf("subscriber heard %d messages, want 350", total)
		}
	}
	require.Len(t, heard, 250)
	require.Equal(t, 2, heard["2fa_sms"])
	require.Equal(t, 1, heard["flag_250"])
}

func TestFeatureFlagsToRedis_FailsClearlyWithoutRedis(t *testing.T) {
	t.Parallel()
	_, err := (&FeatureFlagsToRedis{}).ProcessBatch(context.Background(), nil, batches.Batch{})
	require.ErrorIs(t, err, ErrRedisRequired)
	require.Contains(t, err.Error(), "REDIS_URL")
}
