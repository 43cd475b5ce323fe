-- Sealed storage (issue 23). A signal type's partition whose range ended more than SEAL_AFTER
-- ago is rewritten into compressed blocks and its row form dropped (src/store/sealing). A row
-- costs ~700 B of heap whatever its content, because PostgreSQL compresses no row under ~2 kB;
-- a block holds ~500 signals of consecutive traces as one jsonb value, which it does compress.
--
--   raw_signals              VIEW, what the analysis worker and every reader query
--   ├── raw_signal_rows      the partitioned table signals are written to (was raw_signals)
--   ├── raw_signal_sealing   parent of the row partitions being sealed (rows no longer written)
--   └── raw_signal_blocks    the blocks, one partition per sealed unit,
--       raw_signal_block_traces  and which blocks hold each trace, one partition per unit
--
-- A reader of `raw_signals WHERE trace_id = $1` is sent by the planner through the trace index
-- of the rows and of `raw_signal_block_traces`, then reads the one or two blocks holding it.

ALTER TABLE raw_signals RENAME TO raw_signal_rows;

-- One sealed (or being sealed) row partition: a signal type's partition of one range.
CREATE TABLE raw_signal_units (
    unit         int4 GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    leaf         text NOT NULL,              -- the row partition sealed; its successor keeps the name
    range_name   text NOT NULL,              -- raw_signal_partitions.name of its range
    signal_type  signaltypeenum NOT NULL,
    starts       timestamptz NOT NULL,
    ends         timestamptz NOT NULL,
    -- Until the blocks are attached the rows are read from the old partition, a child of
    -- raw_signal_sealing named raw_signal_sealing_<unit>.
    attached     boolean NOT NULL DEFAULT false,
    next_trace   varchar,                    -- progress: the last trace sealed so far
    blocks       int4 NOT NULL DEFAULT 0,
    signals      int8 NOT NULL DEFAULT 0,
    bytes_before int8 NOT NULL DEFAULT 0,    -- the row partition's size
    started_at   timestamptz NOT NULL DEFAULT now(),
    sealed_at    timestamptz
);
CREATE INDEX raw_signal_units_leaf_idx ON raw_signal_units (leaf);

-- Never holds a row itself: its children (inheritance, not partitions, since they may overlap
-- in range and type) are the old row partitions while their blocks are written.
CREATE TABLE raw_signal_sealing (LIKE raw_signal_rows INCLUDING DEFAULTS);

-- `body`: {"<trace_id>": [[id, service_name, timestamp, received_at, shared_id, payload], …], …}
-- for the traces of the block, timestamps as ISO text in UTC. `starts`/`ends`/`services` bound
-- what the block holds, so a scan by time or service skips the blocks that cannot match.
CREATE TABLE raw_signal_blocks (
    unit        int4 NOT NULL,
    block       int4 NOT NULL,
    signal_type signaltypeenum NOT NULL,
    starts      timestamptz NOT NULL,
    ends        timestamptz NOT NULL,
    services    varchar[] NOT NULL,
    body        jsonb NOT NULL,
    CONSTRAINT raw_signal_blocks_pkey PRIMARY KEY (unit, block)
) PARTITION BY LIST (unit);

-- One row per (trace, block): a trace is in one block, or in two when a block boundary cuts it.
CREATE TABLE raw_signal_block_traces (
    unit     int4 NOT NULL,
    trace_id varchar NOT NULL,
    block    int4 NOT NULL
) PARTITION BY LIST (unit);
CREATE INDEX raw_signal_block_traces_trace_id_idx ON raw_signal_block_traces (trace_id);

-- lz4 decompresses several times faster than pglz at the same size here (BENCHMARKS.md,
-- "Sealing layouts"); a server built without it keeps pglz.
DO $$
BEGIN
    ALTER TABLE raw_signal_blocks ALTER COLUMN body SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 is not available: sealed blocks use pglz';
END;
$$;

-- The signals of one trace's entry in a block.
CREATE FUNCTION raw_signal_unpack(signals jsonb)
RETURNS TABLE (id uuid, service_name varchar, "timestamp" timestamptz, received_at timestamptz, shared_id uuid, payload jsonb)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT (s->>0)::uuid, (s->>1)::varchar, (s->>2)::timestamptz, (s->>3)::timestamptz, (s->>4)::uuid, s->5
    FROM jsonb_array_elements(signals) AS s
$$;

-- Everything sealed or being sealed, with the trace id taken from raw_signal_block_traces so
-- that a filter on it reaches that table's index. A partition being sealed is read without its
-- rows of unknown time: those were copied, when the seal began, into the row partition that
-- took its place, and are never sealed (their retry is recognised there, by id).
CREATE VIEW raw_signals_sealed AS
    SELECT id, signal_type, trace_id, service_name, "timestamp", payload, received_at, time_unknown, shared_id
    FROM raw_signal_sealing WHERE NOT time_unknown
    UNION ALL
    SELECT u.id, b.signal_type, t.trace_id, u.service_name, u."timestamp", u.payload, u.received_at, false, u.shared_id
    FROM raw_signal_block_traces t
    JOIN raw_signal_blocks b ON b.unit = t.unit AND b.block = t.block
    CROSS JOIN LATERAL raw_signal_unpack(b.body -> t.trace_id::text) u;

-- The contract's table, hot or sealed (CONTRACTS §1): same names, types and values.
CREATE VIEW raw_signals AS
    SELECT id, signal_type, trace_id, service_name, "timestamp", payload, received_at, time_unknown, shared_id
    FROM raw_signal_rows
    UNION ALL
    SELECT id, signal_type, trace_id, service_name, "timestamp", payload, received_at, time_unknown, shared_id
    FROM raw_signals_sealed;

-- What the list queries page through (store/signals): the row form, hot or being sealed, and
-- every block unpacked once (not per trace, as raw_signals does), both with the bounds of what
-- they come from: a row's own time and service; a block's times and services, so that a
-- condition on them skips a block without decompressing it.
CREATE VIEW raw_signals_hot AS
    SELECT id, signal_type, trace_id, service_name, "timestamp", payload, shared_id,
           "timestamp" AS lo, "timestamp" AS hi, ARRAY[service_name] AS services, NULL::int4 AS unit, NULL::int4 AS block
    FROM raw_signal_rows
    UNION ALL
    SELECT id, signal_type, trace_id, service_name, "timestamp", payload, shared_id,
           "timestamp", "timestamp", ARRAY[service_name], NULL::int4, NULL::int4
    FROM raw_signal_sealing WHERE NOT time_unknown;

CREATE VIEW raw_signals_unpacked AS
    SELECT u.id, b.signal_type, e.key::varchar AS trace_id, u.service_name, u."timestamp", u.payload, u.shared_id,
           b.starts AS lo, b.ends AS hi, b.services, b.unit, b.block
    FROM raw_signal_blocks b
    CROSS JOIN LATERAL jsonb_each(b.body) e
    CROSS JOIN LATERAL raw_signal_unpack(e.value) u;

CREATE VIEW raw_signals_listed AS
    SELECT * FROM raw_signals_hot
    UNION ALL
    SELECT * FROM raw_signals_unpacked;

-- Append-only holds on the view too: a change is refused before it looks at a row. An insert
-- goes to the row form (where the service writes).
CREATE FUNCTION raw_signals_view_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO raw_signal_rows (id, signal_type, trace_id, service_name, "timestamp", payload, received_at, time_unknown, shared_id)
    VALUES (NEW.id, NEW.signal_type, NEW.trace_id, NEW.service_name, NEW."timestamp", NEW.payload,
            coalesce(NEW.received_at, now()), coalesce(NEW.time_unknown, false), NEW.shared_id);
    RETURN NEW;
END;
$$;
CREATE TRIGGER raw_signals_insert INSTEAD OF INSERT ON raw_signals
    FOR EACH ROW EXECUTE FUNCTION raw_signals_view_insert();
CREATE TRIGGER raw_signals_append_only_rows INSTEAD OF UPDATE OR DELETE ON raw_signals
    FOR EACH ROW EXECUTE FUNCTION raw_signals_reject_change();
CREATE TRIGGER raw_signals_append_only BEFORE UPDATE OR DELETE ON raw_signals
    FOR EACH STATEMENT EXECUTE FUNCTION raw_signals_reject_change();

CREATE TRIGGER raw_signals_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON raw_signal_sealing
    FOR EACH STATEMENT EXECUTE FUNCTION raw_signals_reject_change();
CREATE TRIGGER raw_signals_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON raw_signal_blocks
    FOR EACH STATEMENT EXECUTE FUNCTION raw_signals_reject_change();
CREATE TRIGGER raw_signals_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON raw_signal_block_traces
    FOR EACH STATEMENT EXECUTE FUNCTION raw_signals_reject_change();

-- The signals of `kind` (NULL: every type) stamped in [since, until), hot or sealed: for the
-- service's own scans by time, which reach only the sealed units and blocks of that range
-- (the view cannot skip a block by time: its times are inside the block).
CREATE FUNCTION raw_signals_between(kind signaltypeenum, since timestamptz, until timestamptz)
RETURNS SETOF raw_signals
LANGUAGE sql STABLE AS $$
    SELECT id, signal_type, trace_id, service_name, "timestamp", payload, received_at, time_unknown, shared_id
    FROM raw_signal_rows
    WHERE (kind IS NULL OR signal_type = kind) AND "timestamp" >= since AND "timestamp" < until
    UNION ALL
    SELECT id, signal_type, trace_id, service_name, "timestamp", payload, received_at, time_unknown, shared_id
    FROM raw_signal_sealing
    WHERE (kind IS NULL OR signal_type = kind) AND "timestamp" >= since AND "timestamp" < until AND NOT time_unknown
    UNION ALL
    SELECT u.id, b.signal_type, e.key, u.service_name, u."timestamp", u.payload, u.received_at, false, u.shared_id
    FROM raw_signal_units n
    JOIN raw_signal_blocks b ON b.unit = n.unit AND b.ends >= since AND b.starts < until
    CROSS JOIN LATERAL jsonb_each(b.body) e
    CROSS JOIN LATERAL raw_signal_unpack(e.value) u
    WHERE n.attached AND (kind IS NULL OR n.signal_type = kind) AND n.ends > since AND n.starts < until
      AND u."timestamp" >= since AND u."timestamp" < until
$$;

-- Whether a signal is among those sealed or being sealed: the batch write's check for a signal
-- stamped in a sealed range (a retry, or a late arrival). PL/pgSQL so that it is not inlined:
-- the batch statement then neither plans nor locks the sealed tables unless a signal needs it.
CREATE FUNCTION raw_signal_is_sealed(trace varchar, signal uuid, at timestamptz, kind signaltypeenum)
RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM raw_signals_sealed s
                   WHERE s.trace_id = trace AND s.id = signal AND s."timestamp" = at AND s.signal_type = kind);
END;
$$;
