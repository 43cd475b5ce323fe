-- Incidents are one row per trace, so each new trace inserts into every index of the table.
-- Three of those took keys at random places (the id, trace_id, trace_key), which at millions of
-- incidents means a page read and, after each checkpoint, a full-page image in the WAL per
-- new trace and index (BENCHMARKS.md, "Volume"). This leaves one:
--
-- - One unique index on (trace_id, trace_key) serves both the analysis worker's lookup by
--   trace_id (its leading column) and our upsert, which needs one incident per trace_key:
--   trace_key is either NULL or equal to trace_id (0004), so unique (trace_id, trace_key) is
--   the same rule as unique (trace_key).
-- - New incident ids are time-ordered (UUID version 7: milliseconds since the epoch, then
--   random bits), so the primary key grows at its right edge. The worker's own inserts keep
--   their uuid4 ids; both kinds are plain uuids to every reader.

CREATE UNIQUE INDEX incidents_trace_id_trace_key_key ON incidents (trace_id, trace_key);
DROP INDEX incidents_trace_key_key;
DROP INDEX incidents_trace_id_idx;

CREATE OR REPLACE FUNCTION incidents_claim_trace_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.trace_key IS NULL AND NOT EXISTS (
        SELECT 1 FROM incidents WHERE trace_id = NEW.trace_id AND trace_key = NEW.trace_id) THEN
        NEW.trace_key := NEW.trace_id;
    END IF;
    RETURN NEW;
END;
$$;

-- RFC 9562 version 7: the first 48 bits are the Unix time in milliseconds, the version nibble
-- is 7, the rest random (from gen_random_uuid, whose variant bits are already right).
CREATE FUNCTION uuid_time_ordered() RETURNS uuid
LANGUAGE sql VOLATILE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

ALTER TABLE incidents ALTER COLUMN id SET DEFAULT uuid_time_ordered();
