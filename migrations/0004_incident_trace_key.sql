-- One incident per trace for our upserts: `trace_key` is the trace id of the incident we keep
-- tracking, unique, so a whole batch's incidents are written with one INSERT … ON CONFLICT.
-- It is a separate column (not a unique index on trace_id) because databases carried over
-- from the original backend can hold several incidents for one trace (its race), and the
-- analysis worker must keep being able to insert incidents of its own.

ALTER TABLE incidents ADD COLUMN trace_key varchar;

-- Existing data: the earliest incident of each trace is the one we keep updating.
UPDATE incidents SET trace_key = trace_id
WHERE id IN (SELECT DISTINCT ON (trace_id) id FROM incidents ORDER BY trace_id, detected_at NULLS LAST, id);

CREATE UNIQUE INDEX incidents_trace_key_key ON incidents (trace_key);

-- An incident the worker inserts for a trace that has none claims the key, so that our next
-- signals for that trace update it rather than open a second one.
CREATE FUNCTION incidents_claim_trace_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.trace_key IS NULL AND NOT EXISTS (SELECT 1 FROM incidents WHERE trace_key = NEW.trace_id) THEN
        NEW.trace_key := NEW.trace_id;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER incidents_claim_trace_key
    BEFORE INSERT ON incidents
    FOR EACH ROW EXECUTE FUNCTION incidents_claim_trace_key();
