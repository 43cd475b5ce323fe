-- One batch's write (store/tracking.rs) in one statement, one round trip, one commit: signals,
-- their per-minute counts, incidents, problems and the analyses they cause. Parameters named after
-- a dollar sign are bound from `BatchParams`; escalation rules are stated in incidents::Escalation.
WITH /*INPUT*/input AS (
    SELECT t.*, t.signal_type::signaltypeenum AS kind, t.level::incidentseverity AS severity
    FROM unnest($ids::uuid[], $types::text[], $trace_ids::text[], $services::text[], $timestamps::timestamptz[], $payloads::text[],
                $severities::text[], $tracked::bool[], $requests::bool[], $fingerprints::text[], $titles::text[], $time_unknown::bool[],
                $expires_at::timestamptz[], $shared_ids::uuid[], $errors::bool[])
        AS t(id, signal_type, trace_id, service_name, ts, payload, level, tracked, requests,
             fingerprint, title, time_unknown, expires_at, shared_id, error)
)/*INPUT*/,
shared AS (
    -- The resources and scopes of the batch's OTLP exports, each stored once ever (content-
    -- addressed ids); in id order, so that concurrent batches wait for each other in one order.
    INSERT INTO signal_shared (shared_id, resource, scope)
    SELECT id, resource::jsonb, scope::jsonb FROM unnest($shared_keys::uuid[], $resources::text[], $scopes::text[]) AS s(id, resource, scope)
    ORDER BY id
    ON CONFLICT (shared_id) DO NOTHING
),
shared_used AS (
    -- Those used again, at most hourly per instance (store/shared.rs): the sweep keeps them.
    UPDATE signal_shared SET last_seen = now() WHERE shared_id = ANY($shared_used::uuid[])
),
inserted AS (
    -- In key order, so that two batches retrying the same signals wait for each other in one
    -- order. TIMELESS_CHECK is empty unless the batch has records without a time (see there).
    -- A signal stamped in a range a seal has begun on (store/sealing) may be a retry of one
    -- sealed: looked up there by its trace; the others pass the first test and cost nothing.
    -- On Citus this is a statement of its own, and here the rows it returned (store/tracking.rs).
    /*INSERT*/INSERT INTO raw_signal_rows (id, signal_type, trace_id, service_name, "timestamp", payload, time_unknown, shared_id)
    SELECT id, kind, trace_id, service_name, ts, payload::jsonb, time_unknown, shared_id FROM input
    WHERE (ts >= (SELECT coalesce(max(ends), '-infinity') FROM raw_signal_units)
           OR NOT raw_signal_is_sealed(trace_id, id, ts, kind))
    /*TIMELESS_CHECK*/
    ORDER BY ts, id, kind
    -- The key: ("timestamp", id, signal_type), and trace_id on Citus (store/citus.rs).
    ON CONFLICT DO NOTHING
    RETURNING id, "timestamp", signal_type/*INSERT*/
),
/*TRACKING*/stored AS (
    -- Only newly stored signals count, each once even if repeated within the batch; only
    -- tracked ones (at INCIDENT_MIN_SEVERITY or above) touch incidents and problems.
    SELECT DISTINCT ON (input.ts, input.id, input.kind) input.*
    FROM input JOIN inserted
         ON inserted.id = input.id AND inserted."timestamp" = input.ts AND inserted.signal_type = input.kind
),
activity AS (
    SELECT trace_id, count(*) AS signals, count(*) FILTER (WHERE severity >= 'HIGH') AS high,
           max(severity) AS severity, bool_or(requests) AS requests, bool_or(fingerprint IS NOT NULL) AS faulted,
           array_agg(DISTINCT service_name::varchar) AS services, max(coalesce(expires_at, 'infinity')) AS expires_at
    FROM stored WHERE tracked GROUP BY trace_id
),
/*INCIDENTS*/prior AS MATERIALIZED (
    -- What the statement's snapshot holds of the batch's incidents, before it changes them.
    -- Materialized: Citus, through the coordinator, runs a CTE it inlines after the upsert.
    SELECT i.trace_id, i.trace_key, i.kept, i.detected_at, i.severity
    FROM incidents i WHERE i.trace_id IN (SELECT trace_id FROM activity)
),
claimed AS (
    -- Where each trace's incident lives (migrations/0015): a new trace claims today's range;
    -- a claimed one returns its claim as committed, after waiting for a concurrent claimer.
    INSERT INTO incident_traces AS c (trace_id, detected_at)
    SELECT trace_id, now() FROM activity ORDER BY trace_id
    ON CONFLICT (trace_id) DO UPDATE SET trace_id = excluded.trace_id
    RETURNING c.trace_id, c.detected_at, c.kept, c.xmax = 0 AS fresh
),
upsert AS (
    INSERT INTO incidents AS i (id, trace_id, trace_key, kept, status, severity, detected_at, affected_services, error_count,
                                high_signal_count, last_signal_at, analysis_requested_at, signals_expire_at)
    SELECT uuid_time_ordered(), a.trace_id, a.trace_id, c.kept, 'OPEN', escalated(a.severity, a.high, $critical_after_high::int8),
           c.detected_at, a.services, a.signals, a.high, now(), CASE WHEN a.requests THEN now() END, a.expires_at
    FROM activity a JOIN claimed c USING (trace_id) ORDER BY a.trace_id
    -- The updates read the clock from the row inserted (now()): Citus refuses a function
    -- that is not IMMUTABLE here (migrations/0019).
    ON CONFLICT (trace_id, trace_key, kept, detected_at) DO UPDATE SET
        -- When the last of its signals will have expired (greatest ignores the NULL of an
        -- incident from before this column, or of the worker's own).
        signals_expire_at = greatest(i.signals_expire_at, excluded.signals_expire_at),
        error_count = coalesce(i.error_count, 0) + excluded.error_count,
        high_signal_count = i.high_signal_count + excluded.high_signal_count,
        affected_services = array_add_missing(i.affected_services, excluded.affected_services),
        severity = escalated(greatest(i.severity, excluded.severity),
                             i.high_signal_count + excluded.high_signal_count, $critical_after_high::int8),
        last_signal_at = excluded.last_signal_at,
        analysis_requested_at = CASE WHEN excluded.analysis_requested_at IS NOT NULL
            AND analysis_window_passed_at(i.analysis_requested_at, $analysis_window_secs::float8, excluded.last_signal_at)
            THEN excluded.analysis_requested_at
            ELSE i.analysis_requested_at END
    RETURNING i.id, i.trace_id, i.trace_key, i.kept, i.detected_at, i.severity, i.analysis_requested_at
),
upserted AS (
    -- Each trace's incident as upserted: whether this batch opened it (its claim is new),
    -- raised its severity, or asked for its analysis now. The clock is read here, where the
    -- row's values were made: on Citus, through the coordinator, a RETURNING list is evaluated
    -- at the worker, whose clock is another.
    SELECT u.id, u.trace_id, u.trace_key, u.kept, u.detected_at, u.severity, u.analysis_requested_at = now() AS requested,
           c.fresh, u.severity > p.severity AS escalated
    FROM upsert u JOIN claimed c ON c.trace_id = u.trace_key
         LEFT JOIN prior p ON (p.trace_id, p.trace_key, p.kept, p.detected_at) = (u.trace_id, u.trace_key, u.kept, u.detected_at)
)/*INCIDENTS*//*TRACKING*/,
counted AS (
    -- For GET /query/services; merged by the maintenance (store/activity.rs).
    INSERT INTO service_minutes (service_name, signal_type, minute, signals, errors, last_seen)
    SELECT service_name, kind, date_bin('1 minute', ts, timestamptz 'epoch'), count(*), count(*) FILTER (WHERE error), max(ts)
    FROM stored GROUP BY 1, 2, 3
),
faults AS (
    -- This batch's errors per fingerprint, and a trace of each that wants an analysis now.
    SELECT f.fingerprint, min(f.title) AS title, count(*) AS signals, max(f.severity) AS severity,
           array_agg(DISTINCT f.service_name::varchar) AS services,
           min(u.trace_key) FILTER (WHERE u.requested) AS wanting_trace, min(u.trace_key) AS any_trace
    FROM stored f JOIN upserted u ON u.trace_key = f.trace_id
    WHERE f.tracked AND f.fingerprint IS NOT NULL GROUP BY f.fingerprint
),
problems_upserted AS (
    -- In fingerprint order, like incidents in trace order: concurrent batches cannot deadlock.
    -- A problem claims the analysis (one per window) for its wanting trace when grouping is on
    -- and its last request is older than the window (incidents::Escalation).
    INSERT INTO problems AS p (fingerprint, title, signal_count, services, severity,
                               representative_trace_id, analysis_requested_at, last_seen)
    SELECT fingerprint, title, signals, services, severity, coalesce(wanting_trace, any_trace),
           CASE WHEN $grouping::bool AND wanting_trace IS NOT NULL THEN now() END, now()
    FROM faults ORDER BY fingerprint
    ON CONFLICT (fingerprint) DO UPDATE SET
        last_seen = excluded.last_seen,
        signal_count = p.signal_count + excluded.signal_count,
        services = array_add_missing(p.services, excluded.services),
        severity = greatest(p.severity, excluded.severity),
        -- A claim of this window's analysis moves the representative to the claiming trace.
        (representative_trace_id, analysis_requested_at) = (
            SELECT coalesce(CASE WHEN claim THEN excluded.representative_trace_id END, p.representative_trace_id,
                            excluded.representative_trace_id),
                   CASE WHEN claim THEN excluded.analysis_requested_at ELSE p.analysis_requested_at END
            FROM (SELECT excluded.analysis_requested_at IS NOT NULL
                         AND analysis_window_passed_at(p.analysis_requested_at, $problem_window_secs::float8, excluded.last_seen) AS claim) AS w)
    RETURNING p.id, p.fingerprint, p.representative_trace_id,
              p.analysis_requested_at = now() AND $grouping::bool AS claimed
),
links AS (
    INSERT INTO incident_problems (incident_id, problem_id)
    SELECT DISTINCT u.id, pu.id
    FROM stored f JOIN upserted u ON u.trace_key = f.trace_id JOIN problems_upserted pu ON pu.fingerprint = f.fingerprint
    WHERE f.tracked
    ON CONFLICT DO NOTHING
    RETURNING 1
),
outbox AS (
    -- Per trace, unless grouping is on and the trace's errors belong to a problem: then only the
    -- trace that claimed its problem's analysis for this window.
    INSERT INTO analysis_outbox (trace_id, incident_id)
    SELECT u.trace_id, u.id FROM upserted u JOIN activity a ON a.trace_id = u.trace_key
    WHERE u.requested AND (NOT $grouping::bool OR NOT a.faulted
        OR EXISTS (SELECT 1 FROM problems_upserted pu WHERE pu.claimed AND pu.representative_trace_id = u.trace_key))
    RETURNING 1
)
SELECT ARRAY(SELECT id FROM inserted) AS inserted_ids,
       ARRAY(SELECT "timestamp" FROM inserted) AS inserted_times,
       ARRAY(SELECT signal_type::text FROM inserted) AS inserted_types,
       (SELECT count(*) FROM upserted) AS incidents_upserted,
       (SELECT count(*) FROM outbox) AS analyses_requested,
       -- A trace claimed by this batch has a new incident (the claims' RETURNING can read xmax);
       -- one opened here has no prior row to be raised above.
       ARRAY(SELECT severity::text FROM upserted WHERE fresh) AS opened_severities,
       ARRAY(SELECT severity::text FROM upserted WHERE escalated) AS escalated_severities,
       (SELECT count(*) FROM links) AS problem_links
