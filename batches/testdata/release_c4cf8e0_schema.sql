-- The schema (River's and the engine's) that the release at commit c4cf8e0 created
-- with "enqueue migrate", plus one completed run: pg_dump --inserts --no-owner
-- --no-privileges, psql meta-commands removed. Upgrades are tested from it.
--
-- PostgreSQL database dump
--


-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: river_job_state; Type: TYPE; Schema: public; Owner: -
--

CREATE TYPE public.river_job_state AS ENUM (
    'available',
    'cancelled',
    'completed',
    'discarded',
    'pending',
    'retryable',
    'running',
    'scheduled'
);


--
-- Name: river_job_state_in_bitmask(bit, public.river_job_state); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.river_job_state_in_bitmask(bitmask bit, state public.river_job_state) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT CASE state
        WHEN 'available' THEN get_bit(bitmask, 7)
        WHEN 'cancelled' THEN get_bit(bitmask, 6)
        WHEN 'completed' THEN get_bit(bitmask, 5)
        WHEN 'discarded' THEN get_bit(bitmask, 4)
        WHEN 'pending'   THEN get_bit(bitmask, 3)
        WHEN 'retryable' THEN get_bit(bitmask, 2)
        WHEN 'running'   THEN get_bit(bitmask, 1)
        WHEN 'scheduled' THEN get_bit(bitmask, 0)
        ELSE 0
    END = 1;
$$;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: backfill_partitions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.backfill_partitions (
    run_id bigint NOT NULL,
    partition integer NOT NULL,
    lower_key text,
    upper_key text,
    cursor_key text,
    state text DEFAULT 'pending'::text NOT NULL,
    job_id bigint,
    rows_done bigint DEFAULT 0 NOT NULL,
    rows_affected bigint DEFAULT 0 NOT NULL,
    batches_done bigint DEFAULT 0 NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    last_error text,
    failed_first text,
    failed_last text,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT backfill_partitions_state_check CHECK ((state = ANY (ARRAY['pending'::text, 'running'::text, 'done'::text, 'failed'::text])))
);


--
-- Name: backfill_runs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.backfill_runs (
    id bigint NOT NULL,
    version bigint NOT NULL,
    run_number integer NOT NULL,
    name text NOT NULL,
    mode text NOT NULL,
    direction text NOT NULL,
    checksum text NOT NULL,
    definition jsonb NOT NULL,
    key_type text NOT NULL,
    state text NOT NULL,
    rows_estimated bigint DEFAULT 0 NOT NULL,
    last_error text,
    enqueued_by text NOT NULL,
    enqueued_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    resumed_at timestamp with time zone,
    finished_at timestamp with time zone,
    CONSTRAINT backfill_runs_direction_check CHECK ((direction = ANY (ARRAY['up'::text, 'down'::text]))),
    CONSTRAINT backfill_runs_mode_check CHECK ((mode = ANY (ARRAY['auto'::text, 'manual'::text]))),
    CONSTRAINT backfill_runs_run_number_check CHECK ((run_number > 0)),
    CONSTRAINT backfill_runs_state_check CHECK ((state = ANY (ARRAY['pending'::text, 'running'::text, 'paused'::text, 'failed'::text, 'completed'::text, 'cancelled'::text]))),
    CONSTRAINT backfill_runs_version_check CHECK ((version > 0))
);


--
-- Name: backfill_runs_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.backfill_runs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: backfill_runs_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.backfill_runs_id_seq OWNED BY public.backfill_runs.id;


--
-- Name: backfill_schema_version; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.backfill_schema_version (
    version integer NOT NULL
);


--
-- Name: backfill_throughput; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.backfill_throughput (
    run_id bigint NOT NULL,
    partition integer NOT NULL,
    second timestamp with time zone NOT NULL,
    rows bigint NOT NULL
);


--
-- Name: river_job; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.river_job (
    id bigint NOT NULL,
    state public.river_job_state DEFAULT 'available'::public.river_job_state NOT NULL,
    attempt smallint DEFAULT 0 NOT NULL,
    max_attempts smallint DEFAULT 25 NOT NULL,
    attempted_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    finalized_at timestamp with time zone,
    scheduled_at timestamp with time zone DEFAULT now() NOT NULL,
    priority smallint DEFAULT 1 NOT NULL,
    args jsonb NOT NULL,
    attempted_by text[],
    errors jsonb[],
    kind text NOT NULL,
    metadata jsonb DEFAULT '{}'::jsonb NOT NULL,
    queue text DEFAULT 'default'::text NOT NULL,
    tags character varying(255)[] DEFAULT '{}'::character varying[] NOT NULL,
    unique_key bytea,
    unique_states bit(8),
    CONSTRAINT finalized_or_finalized_at_null CHECK ((((finalized_at IS NULL) AND (state <> ALL (ARRAY['cancelled'::public.river_job_state, 'completed'::public.river_job_state, 'discarded'::public.river_job_state]))) OR ((finalized_at IS NOT NULL) AND (state = ANY (ARRAY['cancelled'::public.river_job_state, 'completed'::public.river_job_state, 'discarded'::public.river_job_state]))))),
    CONSTRAINT kind_length CHECK (((char_length(kind) > 0) AND (char_length(kind) < 128))),
    CONSTRAINT max_attempts_is_positive CHECK ((max_attempts > 0)),
    CONSTRAINT priority_in_range CHECK (((priority >= 1) AND (priority <= 4))),
    CONSTRAINT queue_length CHECK (((char_length(queue) > 0) AND (char_length(queue) < 128)))
);


--
-- Name: backfill_status; Type: VIEW; Schema: public; Owner: -
--

CREATE VIEW public.backfill_status AS
 SELECT r.id,
    r.version,
    r.run_number,
    r.name,
    r.mode,
    r.direction,
    r.checksum,
        CASE
            WHEN ((r.state = ANY (ARRAY['pending'::text, 'running'::text])) AND (p.stalled > 0) AND (p.live = 0)) THEN 'failed'::text
            ELSE r.state
        END AS state,
    (COALESCE(p.rows_done, (0)::numeric))::bigint AS rows_done,
    (COALESCE(p.rows_affected, (0)::numeric))::bigint AS rows_affected,
    (
        CASE
            WHEN (r.state = 'completed'::text) THEN COALESCE(p.rows_done, (0)::numeric)
            ELSE GREATEST((r.rows_estimated)::numeric, COALESCE(p.rows_done, (0)::numeric))
        END)::bigint AS rows_estimated,
    (COALESCE(p.batches_done, (0)::numeric))::bigint AS batches_done,
    COALESCE((p.failed +
        CASE
            WHEN (r.state = ANY (ARRAY['pending'::text, 'running'::text])) THEN p.stalled
            ELSE (0)::bigint
        END), (0)::bigint) AS batches_failed,
    COALESCE(p.partitions, (0)::bigint) AS partitions,
    COALESCE(p.live, (0)::bigint) AS partitions_active,
    COALESCE(r.last_error, p.last_error) AS last_error,
    COALESCE(p.running, (0)::bigint) AS partitions_running,
    COALESCE(p.waiting, (0)::bigint) AS partitions_waiting,
    COALESCE(p.max_attempts, 0) AS retrying_attempt,
    COALESCE((((r.definition -> 'options'::text) ->> 'rate'::text))::double precision, (0)::double precision) AS rate,
    COALESCE((((r.definition -> 'options'::text) ->> 'attempts'::text))::integer, 0) AS max_attempts,
    (
        CASE
            WHEN (w.began IS NULL) THEN (0)::numeric
            ELSE (COALESCE(tp.rows, (0)::numeric) / GREATEST(EXTRACT(epoch FROM (w.upto - GREATEST(w.since, w.began))), 0.001))
        END)::double precision AS rows_per_second,
    r.enqueued_by,
    r.enqueued_at,
    r.started_at,
    r.finished_at
   FROM (((public.backfill_runs r
     LEFT JOIN LATERAL ( SELECT count(*) AS partitions,
            sum(x.rows_done) AS rows_done,
            sum(x.rows_affected) AS rows_affected,
            sum(x.batches_done) AS batches_done,
            count(*) FILTER (WHERE (x.state = 'failed'::text)) AS failed,
            count(*) FILTER (WHERE ((x.state = ANY (ARRAY['pending'::text, 'running'::text])) AND (NOT x.live))) AS stalled,
            count(*) FILTER (WHERE ((x.state = ANY (ARRAY['pending'::text, 'running'::text])) AND x.live)) AS live,
            count(*) FILTER (WHERE ((x.state = ANY (ARRAY['pending'::text, 'running'::text])) AND (x.job_state = 'running'::text))) AS running,
            count(*) FILTER (WHERE ((x.state = ANY (ARRAY['pending'::text, 'running'::text])) AND (x.job_state = 'available'::text) AND (x.job_ready < (now() - '00:00:02'::interval)))) AS waiting,
            max(x.attempts) FILTER (WHERE (x.state = ANY (ARRAY['pending'::text, 'running'::text]))) AS max_attempts,
            (array_agg(x.last_error ORDER BY x.updated_at DESC) FILTER (WHERE (x.last_error IS NOT NULL)))[1] AS last_error
           FROM ( SELECT bp.run_id,
                    bp.partition,
                    bp.lower_key,
                    bp.upper_key,
                    bp.cursor_key,
                    bp.state,
                    bp.job_id,
                    bp.rows_done,
                    bp.rows_affected,
                    bp.batches_done,
                    bp.attempts,
                    bp.last_error,
                    bp.failed_first,
                    bp.failed_last,
                    bp.updated_at,
                    (j.state)::text AS job_state,
                    j.scheduled_at AS job_ready,
                    COALESCE(((j.state)::text = ANY (ARRAY['available'::text, 'pending'::text, 'retryable'::text, 'running'::text, 'scheduled'::text])), false) AS live
                   FROM (public.backfill_partitions bp
                     LEFT JOIN public.river_job j ON ((j.id = bp.job_id)))
                  WHERE (bp.run_id = r.id)) x) p ON (true))
     CROSS JOIN LATERAL ( SELECT COALESCE(r.finished_at, now()) AS upto,
            GREATEST((date_trunc('second'::text, COALESCE(r.finished_at, now())) - '00:01:00'::interval), date_trunc('second'::text, r.resumed_at)) AS since,
                CASE
                    WHEN ((r.started_at IS NULL) OR (r.started_at >= r.finished_at)) THEN ( SELECT min(t.second) AS min
                       FROM public.backfill_throughput t
                      WHERE (t.run_id = r.id))
                    ELSE r.started_at
                END AS began) w)
     LEFT JOIN LATERAL ( SELECT sum(t.rows) AS rows
           FROM public.backfill_throughput t
          WHERE ((t.run_id = r.id) AND (t.second >= w.since))) tp ON (true));


--
-- Name: river_job_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.river_job_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: river_job_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.river_job_id_seq OWNED BY public.river_job.id;


--
-- Name: river_leader; Type: TABLE; Schema: public; Owner: -
--

CREATE UNLOGGED TABLE public.river_leader (
    elected_at timestamp with time zone NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    leader_id text NOT NULL,
    name text DEFAULT 'default'::text NOT NULL,
    CONSTRAINT leader_id_length CHECK (((char_length(leader_id) > 0) AND (char_length(leader_id) < 128))),
    CONSTRAINT name_length CHECK ((name = 'default'::text))
);


--
-- Name: river_migration; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.river_migration (
    line text NOT NULL,
    version bigint NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT line_length CHECK (((char_length(line) > 0) AND (char_length(line) < 128))),
    CONSTRAINT version_gte_1 CHECK ((version >= 1))
);


--
-- Name: river_notification; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.river_notification (
    id bigint NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    payload text NOT NULL,
    topic text NOT NULL,
    CONSTRAINT topic_length CHECK (((length(topic) > 0) AND (length(topic) < 128)))
);


--
-- Name: river_notification_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.river_notification_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: river_notification_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.river_notification_id_seq OWNED BY public.river_notification.id;


--
-- Name: river_queue; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.river_queue (
    name text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    metadata jsonb DEFAULT '{}'::jsonb NOT NULL,
    paused_at timestamp with time zone,
    updated_at timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL
);


--
-- Name: backfill_runs id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.backfill_runs ALTER COLUMN id SET DEFAULT nextval('public.backfill_runs_id_seq'::regclass);


--
-- Name: river_job id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.river_job ALTER COLUMN id SET DEFAULT nextval('public.river_job_id_seq'::regclass);


--
-- Name: river_notification id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.river_notification ALTER COLUMN id SET DEFAULT nextval('public.river_notification_id_seq'::regclass);


--
-- Data for Name: backfill_partitions; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.backfill_partitions VALUES (1, 0, NULL, NULL, '100000', 'done', NULL, 100000, 90000, 100, 0, NULL, NULL, NULL, '2026-11-21 23:26:02.522026+00');


--
-- Data for Name: backfill_runs; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.backfill_runs VALUES (1, 20260301120000, 1, 'users_status_active', 'auto', 'up', 'abc123', '{"source": "backfills/20260301120000_users_status_active.sql", "up_sql": "UPDATE users SET status = 1 WHERE id BETWEEN @first AND @last", "options": {"key": "id", "batch": 1000, "table": "users", "attempts": 5, "partitions": 8}}', 'bigint', 'completed', 100000, NULL, 'release-host', '2026-11-21 23:26:02.522026+00', '2026-11-21 23:26:02.522026+00', NULL, '2026-11-21 23:26:02.522026+00');


--
-- Data for Name: backfill_schema_version; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.backfill_schema_version VALUES (1);


--
-- Data for Name: backfill_throughput; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: river_job; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: river_leader; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: river_migration; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.river_migration VALUES ('main', 1, '2026-11-21 23:26:02.404173+00');
INSERT INTO public.river_migration VALUES ('main', 2, '2026-11-21 23:26:02.411678+00');
INSERT INTO public.river_migration VALUES ('main', 3, '2026-11-21 23:26:02.426039+00');
INSERT INTO public.river_migration VALUES ('main', 4, '2026-11-21 23:26:02.428396+00');
INSERT INTO public.river_migration VALUES ('main', 5, '2026-11-21 23:26:02.432796+00');
INSERT INTO public.river_migration VALUES ('main', 6, '2026-11-21 23:26:02.443693+00');
INSERT INTO public.river_migration VALUES ('main', 7, '2026-11-21 23:26:02.44735+00');
INSERT INTO public.river_migration VALUES ('main', 8, '2026-11-21 23:26:02.454359+00');


--
-- Data for Name: river_notification; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: river_queue; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Name: backfill_runs_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.backfill_runs_id_seq', 1, true);


--
-- Name: river_job_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.river_job_id_seq', 1, false);


--
-- Name: river_notification_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.river_notification_id_seq', 1, false);


--
-- Name: backfill_partitions backfill_partitions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.backfill_partitions
    ADD CONSTRAINT backfill_partitions_pkey PRIMARY KEY (run_id, partition);


--
-- Name: backfill_runs backfill_runs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.backfill_runs
    ADD CONSTRAINT backfill_runs_pkey PRIMARY KEY (id);


--
-- Name: backfill_runs backfill_runs_version_run_number_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.backfill_runs
    ADD CONSTRAINT backfill_runs_version_run_number_key UNIQUE (version, run_number);


--
-- Name: backfill_throughput backfill_throughput_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.backfill_throughput
    ADD CONSTRAINT backfill_throughput_pkey PRIMARY KEY (run_id, partition, second);


--
-- Name: river_job river_job_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.river_job
    ADD CONSTRAINT river_job_pkey PRIMARY KEY (id);


--
-- Name: river_leader river_leader_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.river_leader
    ADD CONSTRAINT river_leader_pkey PRIMARY KEY (name);


--
-- Name: river_migration river_migration_pkey1; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.river_migration
    ADD CONSTRAINT river_migration_pkey1 PRIMARY KEY (line, version);


--
-- Name: river_notification river_notification_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.river_notification
    ADD CONSTRAINT river_notification_pkey PRIMARY KEY (id);


--
-- Name: river_queue river_queue_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.river_queue
    ADD CONSTRAINT river_queue_pkey PRIMARY KEY (name);


--
-- Name: river_job_args_index; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX river_job_args_index ON public.river_job USING gin (args);


--
-- Name: river_job_kind; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX river_job_kind ON public.river_job USING btree (kind);


--
-- Name: river_job_metadata_index; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX river_job_metadata_index ON public.river_job USING gin (metadata);


--
-- Name: river_job_prioritized_fetching_index; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX river_job_prioritized_fetching_index ON public.river_job USING btree (state, queue, priority, scheduled_at, id);


--
-- Name: river_job_state_and_finalized_at_index; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX river_job_state_and_finalized_at_index ON public.river_job USING btree (state, finalized_at) WHERE (finalized_at IS NOT NULL);


--
-- Name: river_job_unique_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX river_job_unique_idx ON public.river_job USING btree (unique_key) WHERE ((unique_key IS NOT NULL) AND (unique_states IS NOT NULL) AND public.river_job_state_in_bitmask(unique_states, state));


--
-- Name: river_notification_created_at_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX river_notification_created_at_idx ON public.river_notification USING btree (created_at);


--
-- Name: river_notification_topic_id_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX river_notification_topic_id_idx ON public.river_notification USING btree (topic, id);


--
-- Name: backfill_partitions backfill_partitions_run_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.backfill_partitions
    ADD CONSTRAINT backfill_partitions_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.backfill_runs(id) ON DELETE CASCADE;


--
-- Name: backfill_throughput backfill_throughput_run_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.backfill_throughput
    ADD CONSTRAINT backfill_throughput_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.backfill_runs(id) ON DELETE CASCADE;


--
-- PostgreSQL database dump complete
--


