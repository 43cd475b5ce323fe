-- The incident list's indexes (0005) in ascending order, read backwards: `ASC NULLS FIRST`
-- scanned backwards is the list's `detected_at DESC NULLS LAST, id DESC`, so every query
-- keeps its index scan. Why: new incidents carry the newest keys, which in a DESC index land
-- at its left edge, where PostgreSQL splits a full page half and half; at the right edge of
-- an ascending index it splits at the fill factor and leaves pages full. Measured on a replay
-- of the soak's incident pattern (BENCHMARKS.md, "A month in an hour"): 18.0 MB descending
-- against 10.4 MB ascending for the same 116,000 rows.

DROP INDEX incidents_detected_at_idx;
DROP INDEX incidents_status_detected_at_idx;
DROP INDEX incidents_severity_detected_at_idx;

CREATE INDEX incidents_detected_at_idx ON incidents (detected_at ASC NULLS FIRST, id ASC);
CREATE INDEX incidents_status_detected_at_idx ON incidents (status, detected_at ASC NULLS FIRST, id ASC);
CREATE INDEX incidents_severity_detected_at_idx ON incidents (severity, detected_at ASC NULLS FIRST, id ASC);
