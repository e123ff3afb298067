-- Throttles changed while a run works ("enqueue throttle"), the health
-- signals that hold a run back, the history of what operators did to a run,
-- and how each worker holds the rate limit.
ALTER TABLE backfill_runs ADD COLUMN throttle jsonb NOT NULL DEFAULT '{}';
COMMENT ON COLUMN backfill_runs.throttle IS 'Options changed while the run works ("enqueue throttle"), e.g. {"rate": 5000, "batch": 500}: each wins over the definition''s, and workers apply it at their next batch.';

ALTER TABLE backfill_runs ADD COLUMN health jsonb;
COMMENT ON COLUMN backfill_runs.health IS 'The last reading of the run''s health signals (replica lag, active backends, transaction age, throttle query, vacuum) and which hold its batches back; workers refresh it on their heartbeat, and a reading older than a minute holds nothing.';

CREATE TABLE backfill_events (
	id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	run_id  bigint      NOT NULL REFERENCES backfill_runs (id) ON DELETE CASCADE,
	at      timestamptz NOT NULL DEFAULT now(),
	actor   text        NOT NULL,
	action  text        NOT NULL,
	detail  jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX backfill_events_run ON backfill_events (run_id, at);
COMMENT ON TABLE backfill_events IS 'What operators did to a run and when: one row per action (throttle, ...).';
COMMENT ON COLUMN backfill_events.id IS 'Order of the events.';
COMMENT ON COLUMN backfill_events.run_id IS 'The run (backfill_runs.id).';
COMMENT ON COLUMN backfill_events.at IS 'When it happened.';
COMMENT ON COLUMN backfill_events.actor IS 'Who did it: user@host of the command, or the web page and the address it was used from.';
COMMENT ON COLUMN backfill_events.action IS 'What was done: throttle, ...';
COMMENT ON COLUMN backfill_events.detail IS 'The action''s values, e.g. the throttle before and after.';

ALTER TABLE backfill_workers ADD COLUMN rate_limit text NOT NULL DEFAULT '';
COMMENT ON COLUMN backfill_workers.rate_limit IS 'How the worker holds runs'' rates: "redis" (one budget for the whole pool), or "share" (each live worker takes its share) with the reason.';
