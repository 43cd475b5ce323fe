-- What the records of one OTLP export share, stored once (issue 13). Every span, log record
-- and data point of an export carries the same resource (service.name, host, version, …) and
-- instrumentation scope; stored inside each payload they were a third of a span's bytes, paid
-- again in the WAL and in every backup. Each distinct (resource, scope) is one row here, keyed
-- by a hash of its content (a version-5 UUID), so any instance can compute the key without
-- asking and a retried export finds its row already there. `raw_signals.shared_id` refers to
-- it; the query API re-attaches `resource` and `scope` to the payload (src/model/payload.rs).
--
-- No foreign key: partitions are created, attached and dropped by the service, and a check on
-- every insert would cost more than it guards (the write inserts the row in the same
-- statement). Rows are never updated (their content is their key) and are kept when the
-- signals referring to them expire: one row per distinct resource and scope is small
-- (docs/volume.md).
--
-- Signals stored before this migration keep their whole payload and a NULL shared_id: the
-- API returns them as stored.

CREATE TABLE signal_shared (
    shared_id uuid PRIMARY KEY,
    resource jsonb NOT NULL,
    scope jsonb NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE raw_signals ADD COLUMN shared_id uuid;
