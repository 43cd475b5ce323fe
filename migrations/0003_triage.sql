-- Triage: per-incident counters and the analysis outbox. New incident columns have defaults,
-- so the analysis worker's own inserts keep working unchanged.

ALTER TABLE incidents
    ADD COLUMN high_signal_count bigint NOT NULL DEFAULT 0,       -- signals assessed HIGH or above
    ADD COLUMN last_signal_at timestamptz,
    ADD COLUMN analysis_requested_at timestamptz;                 -- last outbox request for it

-- /query/incidents?service=…
CREATE INDEX incidents_affected_services_idx ON incidents USING gin (affected_services);

-- Analysis requests, written in the transaction that stores the signals behind them and moved
-- to Redis by the dispatcher. Rows are kept after delivery as an audit trail.
CREATE TABLE analysis_outbox (
    id           bigserial PRIMARY KEY,
    trace_id     varchar NOT NULL,
    incident_id  uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    due_at       timestamptz NOT NULL DEFAULT now(),   -- next attempt; pushed ahead while claimed
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'deduplicated')),
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    sent_at      timestamptz,
    task_id      uuid                                  -- the Celery task id, once sent
);

CREATE INDEX analysis_outbox_due_idx ON analysis_outbox (due_at, id) WHERE status = 'pending';
CREATE INDEX analysis_outbox_trace_id_idx ON analysis_outbox (trace_id);
