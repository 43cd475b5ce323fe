-- Nothing grows without bound (issue 21). signal_shared (the resources and scopes OTLP signals
-- share) was never expired: it now records when a batch last used each row (at most hourly per
-- instance), and rows no stored signal can refer to any more are swept.
ALTER TABLE signal_shared ADD COLUMN last_seen timestamptz NOT NULL DEFAULT now();
CREATE INDEX signal_shared_last_seen_idx ON signal_shared (last_seen);

-- Two rules the batch write applied in several places, each written once. Plain SQL, so the
-- planner inlines them.

-- `current` followed by the items of `more` it lacks, in order (a set that keeps its order).
CREATE FUNCTION array_add_missing(current varchar[], more varchar[]) RETURNS varchar[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT current || ARRAY(SELECT m FROM unnest(more) AS m WHERE m <> ALL(current)) $$;

-- Whether an analysis last requested at `last` (NULL: never) may be requested again now, once
-- per window of `seconds`.
CREATE FUNCTION analysis_window_passed(last timestamptz, seconds float8) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT last IS NULL OR last <= now() - make_interval(secs => seconds) $$;
