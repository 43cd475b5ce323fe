-- `analysis_window_passed` (0012) reading the clock it is given rather than now(): the batch
-- statement's conflict updates take their clock from the row they insert (store/sql/
-- write_batch.sql), as Citus refuses any function that is not IMMUTABLE in `ON CONFLICT DO
-- UPDATE SET` of a table it knows (distributed, or of the coordinator in its metadata). It is
-- immutable in truth: an interval of seconds alone moves a timestamptz the same in every time
-- zone.
CREATE FUNCTION analysis_window_passed_at(last timestamptz, seconds float8, at timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT last IS NULL OR last <= at - make_interval(secs => seconds) $$;
