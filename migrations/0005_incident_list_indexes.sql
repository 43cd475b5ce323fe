-- The incident list orders by detected_at DESC NULLS LAST (detected_at is nullable), which
-- the DESC (NULLS FIRST) indexes of 0002 cannot serve: the first page sorted every incident
-- (326 ms with 500,000 incidents in examples/bench). These match the query's order.

DROP INDEX incidents_detected_at_idx;
DROP INDEX incidents_status_detected_at_idx;
DROP INDEX incidents_severity_detected_at_idx;

CREATE INDEX incidents_detected_at_idx ON incidents (detected_at DESC NULLS LAST, id DESC);
CREATE INDEX incidents_status_detected_at_idx ON incidents (status, detected_at DESC NULLS LAST, id DESC);
CREATE INDEX incidents_severity_detected_at_idx ON incidents (severity, detected_at DESC NULLS LAST, id DESC);
