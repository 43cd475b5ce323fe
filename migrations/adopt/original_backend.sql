-- A database the original Python backend created (SQLAlchemy models, CONTRACTS §1; no
-- schema_migrations table) brought to the state our migrations 0001 and 0002 leave, so that
-- 0003 onwards apply to it as to ours. No row's content changes, except a json payload column
-- becoming jsonb (the worker reads either) and NULL incident statuses and severities taking
-- their defaults. Run once, in the transaction that records 0001 and 0002 as applied.

DO $$
DECLARE
    missing text;
BEGIN
    SELECT string_agg(format('%s.%s', t, c), ', ') INTO missing
    FROM (VALUES ('raw_signals', 'id'), ('raw_signals', 'signal_type'), ('raw_signals', 'trace_id'),
                 ('raw_signals', 'service_name'), ('raw_signals', 'timestamp'), ('raw_signals', 'payload'),
                 ('incidents', 'id'), ('incidents', 'trace_id'), ('incidents', 'status'),
                 ('incidents', 'severity'), ('incidents', 'detected_at'), ('incidents', 'resolved_at'),
                 ('incidents', 'affected_services'), ('incidents', 'error_count'),
                 ('analysis_results', 'id'), ('analysis_results', 'incident_id')) AS want(t, c)
    WHERE NOT EXISTS (SELECT 1 FROM information_schema.columns
                      WHERE table_schema = current_schema() AND table_name = want.t AND column_name = want.c);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'this database has a raw_signals table but not the original backend''s schema (missing %)', missing
            USING HINT = 'point DATABASE_URL at an empty database, or at one created by ProdSentinel';
    END IF;
END;
$$;

ALTER TABLE raw_signals
    ALTER COLUMN signal_type SET NOT NULL,
    ALTER COLUMN trace_id TYPE varchar,
    ALTER COLUMN trace_id SET NOT NULL,
    ALTER COLUMN service_name TYPE varchar,
    ALTER COLUMN service_name SET NOT NULL,
    ALTER COLUMN "timestamp" SET NOT NULL,
    ALTER COLUMN payload TYPE jsonb USING payload::jsonb,
    ALTER COLUMN payload SET NOT NULL,
    ADD COLUMN IF NOT EXISTS received_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX IF NOT EXISTS raw_signals_service_name_timestamp_idx ON raw_signals (service_name, "timestamp" DESC);
CREATE INDEX IF NOT EXISTS raw_signals_signal_type_timestamp_idx ON raw_signals (signal_type, "timestamp" DESC);

CREATE OR REPLACE FUNCTION raw_signals_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'raw_signals is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'signals are immutable; store a new signal instead';
END;
$$;
DROP TRIGGER IF EXISTS raw_signals_append_only ON raw_signals;
CREATE TRIGGER raw_signals_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON raw_signals
    FOR EACH STATEMENT EXECUTE FUNCTION raw_signals_reject_change();

UPDATE incidents SET status = 'OPEN' WHERE status IS NULL;
UPDATE incidents SET severity = 'LOW' WHERE severity IS NULL;
UPDATE incidents SET affected_services = '{}' WHERE affected_services IS NULL;
ALTER TABLE incidents
    ALTER COLUMN id SET DEFAULT gen_random_uuid(),
    ALTER COLUMN trace_id TYPE varchar,
    ALTER COLUMN trace_id SET NOT NULL,
    ALTER COLUMN status SET DEFAULT 'OPEN',
    ALTER COLUMN status SET NOT NULL,
    ALTER COLUMN severity SET DEFAULT 'LOW',
    ALTER COLUMN severity SET NOT NULL,
    ALTER COLUMN detected_at SET DEFAULT now(),
    ALTER COLUMN affected_services SET DEFAULT '{}',
    ALTER COLUMN affected_services SET NOT NULL,
    ALTER COLUMN error_count SET DEFAULT 0;
CREATE INDEX IF NOT EXISTS incidents_trace_id_idx ON incidents (trace_id);
CREATE INDEX IF NOT EXISTS incidents_detected_at_idx ON incidents (detected_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS incidents_status_detected_at_idx ON incidents (status, detected_at DESC);
CREATE INDEX IF NOT EXISTS incidents_severity_detected_at_idx ON incidents (severity, detected_at DESC);

ALTER TABLE analysis_results
    ALTER COLUMN id SET DEFAULT gen_random_uuid(),
    ALTER COLUMN generated_at SET DEFAULT now();
CREATE INDEX IF NOT EXISTS analysis_results_incident_id_generated_at_idx
    ON analysis_results (incident_id, generated_at DESC);
