-- One shard's share of a batch written at the node holding the shard (store/citus/parts.rs),
-- into the shard's own table: {shard} is its name there. Rows as the batch statement stores
-- them (write_batch.sql, its INSERT), in key order; a retry conflicts and is returned no row.
INSERT INTO {shard} (id, signal_type, trace_id, service_name, "timestamp", payload, time_unknown, shared_id)
SELECT id, kind::signaltypeenum, trace_id, service_name, ts, payload::jsonb, false, shared_id
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::uuid[])
    AS t(id, kind, trace_id, service_name, ts, payload, shared_id)
ORDER BY ts, id, kind::signaltypeenum
ON CONFLICT DO NOTHING
RETURNING id, "timestamp", signal_type::text
