-- A run's history for its page: the rows/s of every minute of its life (the
-- per-second buckets are kept only ten minutes), and an index that lets
-- workers prune old events by time.
CREATE TABLE backfill_throughput_minutes (
	run_id       bigint      NOT NULL REFERENCES backfill_runs (id) ON DELETE CASCADE,
	minute       timestamptz NOT NULL,
	rows         bigint      NOT NULL,
	busy_seconds double precision NOT NULL DEFAULT 0,
	PRIMARY KEY (run_id, minute)
);
COMMENT ON TABLE backfill_throughput_minutes IS 'Keys done per run and minute, over all its partitions: the per-second buckets of backfill_throughput, summed when workers prune them after ten minutes. The run page''s chart reads both.';
COMMENT ON COLUMN backfill_throughput_minutes.run_id IS 'The run (backfill_runs.id).';
COMMENT ON COLUMN backfill_throughput_minutes.minute IS 'The minute (truncated) the batches committed in.';
COMMENT ON COLUMN backfill_throughput_minutes.rows IS 'Keys done in that minute.';
COMMENT ON COLUMN backfill_throughput_minutes.busy_seconds IS 'How long the batches of that minute kept the database busy.';

CREATE INDEX backfill_events_at ON backfill_events (at);
COMMENT ON TABLE backfill_events IS 'A run''s history: its changes of state (enqueue, start, pause, resume, retry, cancel, complete, fail), operator actions (throttle) with who did them, failed batches and loss checks. Workers delete the events of runs finished longer ago than their --event-retention (90 days by default).';
COMMENT ON COLUMN backfill_events.actor IS 'Who did it: user@host of the command, the web page and the address it was used from, or the worker (its client id).';
COMMENT ON COLUMN backfill_events.action IS 'What happened: enqueue, start, pause, resume, retry, cancel, complete, fail, throttle, batch_failed or loss_check.';
