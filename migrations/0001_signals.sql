-- Raw telemetry, append-only. Names, types and labels are a contract with the analysis
-- worker (CONTRACTS §1): it runs SELECT * FROM raw_signals WHERE trace_id = $1 ORDER BY timestamp.

CREATE TYPE signaltypeenum AS ENUM ('log', 'trace', 'metric');

CREATE TABLE raw_signals (
    id           uuid PRIMARY KEY,                 -- the client's signal_id: retries store nothing twice
    signal_type  signaltypeenum NOT NULL,
    trace_id     varchar NOT NULL,                 -- correlation key (a trace id or svc:<service>:<window>)
    service_name varchar NOT NULL,
    "timestamp"  timestamptz NOT NULL,
    payload      jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);

-- The worker's read and the trace view: all signals of a trace in time order.
CREATE INDEX raw_signals_trace_id_timestamp_idx ON raw_signals (trace_id, "timestamp");
-- /query/signals, newest first, unfiltered and filtered by service or type.
CREATE INDEX raw_signals_timestamp_idx ON raw_signals ("timestamp" DESC, id DESC);
CREATE INDEX raw_signals_service_name_timestamp_idx ON raw_signals (service_name, "timestamp" DESC);
CREATE INDEX raw_signals_signal_type_timestamp_idx ON raw_signals (signal_type, "timestamp" DESC);

-- Append-only, enforced by the database whoever the client is.
CREATE FUNCTION raw_signals_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'raw_signals is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'signals are immutable; store a new signal instead';
END;
$$;

-- Statement-level, so even an UPDATE or DELETE that matches no row is refused.
CREATE TRIGGER raw_signals_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON raw_signals
    FOR EACH STATEMENT EXECUTE FUNCTION raw_signals_reject_change();
