-- The Jaeger query API (issue 22) lists services and operations and draws the service graph.
-- Both must cost the same at any volume, so neither scans the spans of a range.

-- Every (service, operation, span kind) seen, with when it was last seen: written after a
-- batch commits, by an instance that has not written that row within the last half hour
-- (store/span_rollups.rs), so a busy operation costs one row write per half hour, not one per
-- batch. Rows not seen for longer than spans are kept are deleted by the maintenance.
CREATE TABLE span_operations (
    service_name varchar NOT NULL,
    operation    varchar NOT NULL,
    span_kind    text NOT NULL,              -- SERVER, CLIENT, … ; '' for a legacy span
    last_seen    timestamptz NOT NULL,
    PRIMARY KEY (service_name, operation, span_kind)
);

-- Calls between services, per ten minutes of span start times: a span whose parent belongs to
-- another service is one call from the parent's service to the child's. Computed by the
-- maintenance once a bucket is closed (its spans have arrived), from the spans of the bucket and
-- of the bucket before it (where a parent that started earlier is found).
CREATE TABLE span_dependencies (
    bucket     timestamptz NOT NULL,
    parent     varchar NOT NULL,
    child      varchar NOT NULL,
    call_count int8 NOT NULL,
    PRIMARY KEY (bucket, parent, child)
);

-- The buckets computed (with or without calls), so each is computed once.
CREATE TABLE span_dependency_buckets (
    bucket      timestamptz PRIMARY KEY,
    computed_at timestamptz NOT NULL DEFAULT now()
);
