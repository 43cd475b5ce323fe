-- Incidents partitioned by time (issue 21: "incidents stay cheap at volume"). Until now one
-- table held every incident and the maintenance deleted the expired ones in batches: at a
-- hundred million incidents a day that is a hundred million row deletes, and the list indexes
-- kept pages half empty wherever an analysed incident outlived its neighbours (BENCHMARKS.md,
-- "A month in an hour"). Now:
--
--   incidents                      PARTITION BY LIST (kept)
--     incidents_live   (false)     PARTITION BY RANGE (detected_at), one per PARTITION_INTERVAL
--       incidents_p20261205 ...    created ahead by the maintenance, recorded in incident_partitions
--       incidents_live_default     what no range holds (a NULL detected_at, a clock far ahead)
--     incidents_kept   (true)     the incidents that outlive their range, expired row by row
--
-- When a range's incidents have mostly expired (model::lifecycle), the few that must outlive
-- it (analysed ones, ones whose signals are still kept) move to incidents_kept, and the range
-- is dropped whole: the bulk of the incidents is never deleted row by row.
--
-- One incident per trace across ranges: a partitioned table's unique index must hold the
-- partition key, so the trace's row in incident_traces (one per trace, keyed by trace_id)
-- records where its incident lives; the batch write claims it first and upserts the incident
-- with the claim's detected_at and kept. Claiming (ON CONFLICT DO UPDATE) waits for a
-- concurrent claimer and returns its committed row, so two batches never open two incidents
-- for one trace, even across midnight.
--
-- The table that existed becomes incidents_kept, whole: its rows follow the row expiry as
-- before, new incidents go to the ranges. Nothing is copied.
--
-- The analysis worker's reads and writes are unchanged (CONTRACTS.md): it finds incidents by
-- trace_id and updates them by id, which reach every partition. A partitioned table cannot be
-- the target of a foreign key without its partition key, so analysis_results and
-- incident_problems no longer reference incidents: they expire with their incident
-- (store/lifecycle.rs, store/partitions/incidents.rs).

DO $$
DECLARE fk record;
BEGIN
    FOR fk IN SELECT conrelid::regclass AS tab, conname FROM pg_constraint
              WHERE contype = 'f' AND confrelid = 'incidents'::regclass LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.tab, fk.conname);
    END LOOP;
END $$;

DROP TRIGGER incidents_claim_trace_key ON incidents;

-- Rows only the original backend or the worker could have written without a time cannot be
-- found again by trace through a claim: they stop being the trace's incident.
UPDATE incidents SET trace_key = NULL WHERE detected_at IS NULL AND trace_key IS NOT NULL;

ALTER TABLE incidents RENAME TO incidents_kept;
ALTER TABLE incidents_kept ADD COLUMN kept boolean NOT NULL DEFAULT true;
ALTER TABLE incidents_kept RENAME CONSTRAINT incidents_pkey TO incidents_kept_pkey;
ALTER INDEX incidents_affected_services_idx RENAME TO incidents_kept_affected_services_idx;
ALTER INDEX incidents_analysed_idx RENAME TO incidents_kept_analysed_idx;
ALTER INDEX incidents_detected_at_idx RENAME TO incidents_kept_detected_at_idx;
ALTER INDEX incidents_severity_detected_at_idx RENAME TO incidents_kept_severity_detected_at_idx;
ALTER INDEX incidents_status_detected_at_idx RENAME TO incidents_kept_status_detected_at_idx;
DROP INDEX incidents_trace_id_trace_key_key;
CREATE UNIQUE INDEX incidents_kept_trace_key ON incidents_kept (trace_id, trace_key, kept, detected_at);

CREATE TABLE incidents (
    id                    uuid NOT NULL DEFAULT uuid_time_ordered(),
    trace_id              varchar NOT NULL,
    status                incidentstatus NOT NULL DEFAULT 'OPEN',
    severity              incidentseverity NOT NULL DEFAULT 'LOW',
    detected_at           timestamptz DEFAULT now(),
    resolved_at           timestamptz,
    affected_services     varchar[] NOT NULL DEFAULT '{}',
    error_count           double precision DEFAULT 0,
    high_signal_count     bigint NOT NULL DEFAULT 0,
    last_signal_at        timestamptz,
    analysis_requested_at timestamptz,
    trace_key             varchar,
    signals_expire_at     timestamptz,
    kept                  boolean NOT NULL DEFAULT false
) PARTITION BY LIST (kept);

CREATE TABLE incidents_live PARTITION OF incidents FOR VALUES IN (false) PARTITION BY RANGE (detected_at);
CREATE TABLE incidents_live_default PARTITION OF incidents_live DEFAULT;
ALTER TABLE incidents ATTACH PARTITION incidents_kept FOR VALUES IN (true);

-- Indexes on the parent, the kept table's existing ones attached to them (no rebuild).
CREATE UNIQUE INDEX incidents_trace_key ON incidents (trace_id, trace_key, kept, detected_at);
CREATE INDEX incidents_id_idx ON incidents (id);
CREATE INDEX incidents_affected_services_idx ON incidents USING gin (affected_services);
CREATE INDEX incidents_analysed_idx ON incidents (detected_at)
    WHERE analysis_requested_at IS NOT NULL OR status <> 'OPEN';
CREATE INDEX incidents_detected_at_idx ON incidents (detected_at ASC NULLS FIRST, id ASC);
CREATE INDEX incidents_status_detected_at_idx ON incidents (status, detected_at ASC NULLS FIRST, id ASC);
CREATE INDEX incidents_severity_detected_at_idx ON incidents (severity, detected_at ASC NULLS FIRST, id ASC);

-- The ranges, as the maintenance created them.
CREATE TABLE incident_partitions (
    name   text PRIMARY KEY,
    starts timestamptz NOT NULL,
    ends   timestamptz NOT NULL
);

-- Where each trace's incident lives. Rows go with their incident.
CREATE TABLE incident_traces (
    trace_id    varchar PRIMARY KEY,
    detected_at timestamptz NOT NULL,
    kept        boolean NOT NULL DEFAULT false
);

INSERT INTO incident_traces (trace_id, detected_at, kept)
SELECT trace_id, detected_at, true FROM incidents_kept WHERE trace_key = trace_id;

-- An incident inserted without a trace_key (the worker's) becomes its trace's incident when
-- the trace has none yet: it claims the trace. Also fires for rows moved to incidents_kept,
-- where the claim exists and nothing changes.
CREATE OR REPLACE FUNCTION incidents_claim_trace_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.detected_at IS NOT NULL THEN
        INSERT INTO incident_traces (trace_id, detected_at, kept) VALUES (NEW.trace_id, NEW.detected_at, NEW.kept)
        ON CONFLICT (trace_id) DO NOTHING;
        IF FOUND THEN
            NEW.trace_key := NEW.trace_id;
        END IF;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER incidents_claim_trace_key
    BEFORE INSERT ON incidents
    FOR EACH ROW WHEN (NEW.trace_key IS NULL) EXECUTE FUNCTION incidents_claim_trace_key();
