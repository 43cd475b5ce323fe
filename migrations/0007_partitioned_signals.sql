-- Volume (issue 12): raw_signals becomes a declaratively partitioned table, by time and then by
-- signal type, so that expiry drops whole partitions and every insert touches small indexes.
--
--   raw_signals                      PARTITION BY RANGE ("timestamp")
--   ├── raw_signals_p20261201        one per PARTITION_INTERVAL, PARTITION BY LIST (signal_type)
--   │   ├── raw_signals_p20261201_log     ← RETENTION_LOGS drops these
--   │   ├── raw_signals_p20261201_trace   ← RETENTION_TRACES
--   │   └── raw_signals_p20261201_metric  ← RETENTION_METRICS
--   ├── raw_signals_legacy           the table as it was before this migration, whole: every row
--   │                                stamped before the cut-over (no row is copied)
--   └── raw_signals_default          signals outside every partition (clocks far ahead, a time
--                                    before the first partition): stored and readable
--
-- The service creates the interval partitions ahead of time (src/store/partitions). The names,
-- types and labels the analysis worker reads (CONTRACTS §1) are unchanged.
--
-- The primary key must hold the partition keys, so a signal is identified by
-- ("timestamp", id, signal_type): a retried export has the same time and id, so it is still
-- stored once. Leading with the time keeps the key's inserts at the right edge of its index
-- instead of scattered by a random uuid. The trace index is on trace_id alone: the spans of a
-- trace then share one deduplicated index entry, which is what keeps inserts as cheap at 12 M
-- rows as on an empty partition (BENCHMARKS.md, "Volume").

ALTER TABLE raw_signals RENAME TO raw_signals_legacy;
ALTER INDEX IF EXISTS raw_signals_pkey RENAME TO raw_signals_legacy_pkey;
ALTER INDEX IF EXISTS raw_signals_trace_id_timestamp_idx RENAME TO raw_signals_legacy_trace_id_timestamp_idx;
ALTER INDEX IF EXISTS raw_signals_timestamp_idx RENAME TO raw_signals_legacy_timestamp_idx;
ALTER INDEX IF EXISTS raw_signals_service_name_timestamp_idx RENAME TO raw_signals_legacy_service_name_timestamp_idx;
ALTER INDEX IF EXISTS raw_signals_signal_type_timestamp_idx RENAME TO raw_signals_legacy_signal_type_timestamp_idx;
-- OTLP records that carry no time at all are stamped with their receipt time; this flag lets a
-- retry of one find the first copy by id (see the partial index below).
ALTER TABLE raw_signals_legacy ADD COLUMN time_unknown boolean NOT NULL DEFAULT false;

-- The same refusal, naming the partition a statement was aimed at.
CREATE OR REPLACE FUNCTION raw_signals_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'raw_signals is append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'signals are immutable; expiry drops whole partitions older than the retention';
END;
$$;

CREATE TABLE raw_signals (
    id           uuid NOT NULL,                    -- the client's signal_id (or ours, derived)
    signal_type  signaltypeenum NOT NULL,
    trace_id     varchar NOT NULL,                 -- correlation key (a trace id or svc:<service>:<window>)
    service_name varchar NOT NULL,
    "timestamp"  timestamptz NOT NULL,
    payload      jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    time_unknown boolean NOT NULL DEFAULT false,
    CONSTRAINT raw_signals_pkey PRIMARY KEY ("timestamp", id, signal_type)
) PARTITION BY RANGE ("timestamp");

-- The worker's read and the trace view: all signals of a trace (sorted after the lookup).
CREATE INDEX raw_signals_trace_id_idx ON raw_signals (trace_id);
-- /query/signals?service_name=…, newest first. Newest first unfiltered is the primary key.
CREATE INDEX raw_signals_service_name_timestamp_idx ON raw_signals (service_name, "timestamp" DESC);
-- Retries of records without a time: only those rows are in it, so it stays empty in practice.
CREATE INDEX raw_signals_time_unknown_idx ON raw_signals (id) WHERE time_unknown;

-- Statement-level triggers fire for the table a statement names, so every partition gets one
-- too (the service adds it to each partition it creates).
CREATE TRIGGER raw_signals_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON raw_signals
    FOR EACH STATEMENT EXECUTE FUNCTION raw_signals_reject_change();

CREATE TABLE raw_signals_default PARTITION OF raw_signals DEFAULT;
CREATE TRIGGER raw_signals_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON raw_signals_default
    FOR EACH STATEMENT EXECUTE FUNCTION raw_signals_reject_change();

-- Every range partition with its bounds, written in the transaction that attaches it.
CREATE TABLE raw_signal_partitions (
    name       text PRIMARY KEY,
    starts     timestamptz,                 -- NULL: from the beginning of time (raw_signals_legacy)
    ends       timestamptz NOT NULL,
    legacy     boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

DO $$
DECLARE
    -- The legacy table keeps taking what is stamped before the next full hour; the service's
    -- partitions start there.
    cutover timestamptz := date_trunc('hour', now()) + interval '1 hour';
    key_name text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM raw_signals_legacy) THEN
        DROP TABLE raw_signals_legacy;
        RETURN;
    END IF;
    -- Rows stamped at or after the cut-over (clocks running ahead) go where later ones would.
    IF EXISTS (SELECT 1 FROM raw_signals_legacy WHERE "timestamp" >= cutover) THEN
        INSERT INTO raw_signals_default (id, signal_type, trace_id, service_name, "timestamp", payload, received_at)
            SELECT id, signal_type, trace_id, service_name, "timestamp", payload, received_at
            FROM raw_signals_legacy WHERE "timestamp" >= cutover;
        ALTER TABLE raw_signals_legacy DISABLE TRIGGER raw_signals_append_only;
        DELETE FROM raw_signals_legacy WHERE "timestamp" >= cutover;
        ALTER TABLE raw_signals_legacy ENABLE TRIGGER raw_signals_append_only;
    END IF;
    -- Uniqueness on the new key (what ON CONFLICT checks); the key on id alone would turn a
    -- resend with another timestamp into an error instead of a second row.
    CREATE UNIQUE INDEX raw_signals_legacy_timestamp_id_signal_type_key
        ON raw_signals_legacy ("timestamp", id, signal_type);
    SELECT conname INTO key_name FROM pg_constraint
        WHERE conrelid = 'raw_signals_legacy'::regclass AND contype = 'p';
    IF key_name IS NOT NULL THEN
        EXECUTE format('ALTER TABLE raw_signals_legacy DROP CONSTRAINT %I', key_name);
    END IF;
    CREATE INDEX raw_signals_legacy_trace_id_idx ON raw_signals_legacy (trace_id);
    CREATE INDEX raw_signals_legacy_time_unknown_idx ON raw_signals_legacy (id) WHERE time_unknown;
    DROP INDEX IF EXISTS raw_signals_legacy_trace_id_timestamp_idx;
    DROP INDEX IF EXISTS raw_signals_legacy_timestamp_idx;
    IF to_regclass('raw_signals_legacy_service_name_timestamp_idx') IS NULL THEN
        CREATE INDEX raw_signals_legacy_service_name_timestamp_idx
            ON raw_signals_legacy (service_name, "timestamp" DESC);
    END IF;
    EXECUTE format('ALTER TABLE raw_signals ATTACH PARTITION raw_signals_legacy FOR VALUES FROM (MINVALUE) TO (%L)',
                   cutover);
    INSERT INTO raw_signal_partitions (name, starts, ends, legacy) VALUES ('raw_signals_legacy', NULL, cutover, true);
END;
$$;

-- Incidents grow like traces: each gets the time by which all of its signals will have
-- expired (the maintenance job deletes the ones nobody analysed once it has passed). NULL for
-- incidents from before this migration and for the analysis worker's own: they go after
-- INCIDENT_RETENTION without activity.
ALTER TABLE incidents ADD COLUMN signals_expire_at timestamptz;

-- Delivered outbox rows expire after OUTBOX_RETENTION.
CREATE INDEX analysis_outbox_sent_at_idx ON analysis_outbox (sent_at) WHERE status <> 'pending';
