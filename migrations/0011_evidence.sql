-- Evidence outlives noise (issue 21). When a signal type's partition (or the table from before
-- partitioning) expires, the rows of the traces that are evidence (an analysed incident's, or a
-- problem's representative) are kept in a small table that takes the partition's place, with
-- its name and bounds, and the rest goes with the old table: no row is updated or deleted.
-- This records the partitions that now hold only evidence, and what they kept.
CREATE TABLE raw_signal_evidence (
    name         text PRIMARY KEY,
    signal_type  signaltypeenum,           -- NULL: the table from before partitioning (every type)
    signals      bigint NOT NULL,          -- rows kept
    bytes_before bigint NOT NULL,          -- the partition's size when it expired
    kept_at      timestamptz NOT NULL DEFAULT now()
);

-- The analysed incidents among all of them (few), found without scanning the table: the
-- evidence is looked up from them. Not keyed by trace: incidents keep the one trace index
-- that serves both the worker's lookup and the upserts.
CREATE INDEX incidents_analysed_idx ON incidents (detected_at)
    WHERE analysis_requested_at IS NOT NULL OR status <> 'OPEN';
