-- GET /query/services costs the same at any volume (issue 21): it counted every signal of its
-- range. Now each stored signal is counted once, per service, type and minute, by the batch
-- that stores it, and the answer sums these counts (store/activity.rs says how they are kept
-- equal to what raw_signals holds).

-- Per service, type and minute (UTC): the batches' counts (`merged` false, several per key),
-- and the maintenance's merge of them (`merged` true, one per key).
CREATE TABLE service_minutes (
    service_name varchar NOT NULL,
    signal_type signaltypeenum NOT NULL,
    minute timestamptz NOT NULL,
    signals int8 NOT NULL,
    errors int8 NOT NULL,
    last_seen timestamptz NOT NULL,
    merged boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX service_minutes_merged_key ON service_minutes (minute, service_name, signal_type) WHERE merged;
CREATE INDEX service_minutes_batches_idx ON service_minutes (minute) WHERE NOT merged;

-- Per service, type and hour: the sum of the hour's merged minutes.
CREATE TABLE service_hours (
    service_name varchar NOT NULL,
    signal_type signaltypeenum NOT NULL,
    hour timestamptz NOT NULL,
    signals int8 NOT NULL,
    errors int8 NOT NULL,
    last_seen timestamptz NOT NULL,
    PRIMARY KEY (hour, service_name, signal_type)
);

-- Ranges whose counts no longer match raw_signals (a partition dropped or replaced by its
-- evidence), recounted by the next merge. NULL: unbounded, or every type.
CREATE TABLE service_activity_stale (
    signal_type signaltypeenum,
    starts timestamptz,
    ends timestamptz
);
-- The signals stored before this migration: everything is counted once.
INSERT INTO service_activity_stale VALUES (NULL, NULL, NULL);

-- The batch write's escalation rule, written once: `severity`, or CRITICAL once `high`
-- signals of HIGH or above reach `critical_after_high` (0: never).
CREATE FUNCTION escalated(severity incidentseverity, high int8, critical_after_high int8) RETURNS incidentseverity
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN critical_after_high > 0 AND high >= critical_after_high
                  THEN 'CRITICAL'::incidentseverity ELSE severity END $$;
