//! The write of one batch: signals, the incidents they touch and the analysis requests they
//! cause, in one SQL statement (so one round trip and one atomic commit). An acknowledgement
//! therefore covers all three, and a retried batch (duplicates) changes none of them.
//!
//! Incidents are aggregated per trace inside the statement and upserted in trace order on the
//! unique `(trace_id, trace_key)`, with relative updates: concurrent batches serialise per incident
//! without deadlocking, and the analysis worker's own updates of the row are kept.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreError};
use crate::incidents::Triage;
use crate::model::payload::Shared;
use crate::model::{IncidentSeverity, Signal, SignalKey, SignalType};

/// What one batch write did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchOutcome {
    /// Signals newly stored.
    pub inserted: u64,
    /// Their keys.
    pub inserted_keys: HashSet<SignalKey>,
    /// Signals already stored (retries): acknowledged, not stored or counted again.
    pub duplicates: u64,
    pub incidents_opened: u64,
    pub incidents_updated: u64,
    /// Outbox rows written.
    pub analyses_requested: u64,
    /// The severity of each incident opened.
    pub opened_severities: Vec<IncidentSeverity>,
    /// The new severity of each existing incident whose severity this batch raised.
    pub escalated_severities: Vec<IncidentSeverity>,
    /// Incidents newly linked to a problem.
    pub problem_links: u64,
}

const WRITE_BATCH: &str = r#"
WITH input AS (
    SELECT t.*, t.signal_type::signaltypeenum AS kind
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
                $7::text[], $8::bool[], $9::bool[], $12::text[], $13::text[], $16::bool[], $17::timestamptz[],
                $18::uuid[])
        AS t(id, signal_type, trace_id, service_name, ts, payload, severity, tracked, requests,
             fingerprint, title, time_unknown, expires_at, shared_id)
),
shared AS (
    -- The resources and scopes of the batch's OTLP exports, each stored once ever (content-
    -- addressed ids); in id order, so that concurrent batches wait for each other in one order.
    INSERT INTO signal_shared (shared_id, resource, scope)
    SELECT id, resource::jsonb, scope::jsonb FROM unnest($19::uuid[], $20::text[], $21::text[]) AS s(id, resource, scope)
    ORDER BY id
    ON CONFLICT (shared_id) DO NOTHING
),
inserted AS (
    -- In key order, so that two batches retrying the same signals wait for each other in one
    -- order. TIMELESS_CHECK is empty unless the batch has records without a time (see there).
    INSERT INTO raw_signals (id, signal_type, trace_id, service_name, "timestamp", payload, time_unknown, shared_id)
    SELECT id, kind, trace_id, service_name, ts, payload::jsonb, time_unknown, shared_id FROM input
    /*TIMELESS_CHECK*/
    ORDER BY ts, id, kind
    ON CONFLICT ("timestamp", id, signal_type) DO NOTHING
    RETURNING id, "timestamp", signal_type
),
fresh AS (
    -- Only newly stored signals count, each once even if repeated within the batch.
    SELECT DISTINCT ON (input.ts, input.id, input.kind) input.trace_id, input.service_name,
           input.severity::incidentseverity AS severity, input.requests, input.fingerprint, input.title,
           coalesce(input.expires_at, 'infinity') AS expires_at
    FROM input JOIN inserted
         ON inserted.id = input.id AND inserted."timestamp" = input.ts AND inserted.signal_type = input.kind
    WHERE input.tracked
),
activity AS (
    SELECT trace_id, count(*) AS signals, count(*) FILTER (WHERE severity >= 'HIGH') AS high,
           max(severity) AS severity, bool_or(requests) AS requests,
           array_agg(DISTINCT service_name::varchar) AS services, max(expires_at) AS expires_at
    FROM fresh GROUP BY trace_id
),
prior AS (
    -- The statement's snapshot: severities before this batch, to tell escalations.
    SELECT trace_key, severity FROM incidents
    WHERE trace_id IN (SELECT trace_id FROM activity) AND trace_key = trace_id
),
upserted AS (
    INSERT INTO incidents AS i (id, trace_id, trace_key, status, severity, detected_at, affected_services,
                                error_count, high_signal_count, last_signal_at, analysis_requested_at,
                                signals_expire_at)
    SELECT uuid_time_ordered(), a.trace_id, a.trace_id, 'OPEN',
           greatest(a.severity, CASE WHEN $10::int8 > 0 AND a.high >= $10::int8 THEN 'CRITICAL'::incidentseverity END),
           now(), a.services, a.signals, a.high, now(), CASE WHEN a.requests THEN now() END, a.expires_at
    FROM activity a ORDER BY a.trace_id
    ON CONFLICT (trace_id, trace_key) DO UPDATE SET
        -- When the last of its signals will have expired (greatest ignores the NULL of an
        -- incident from before this column, or of the worker's own).
        signals_expire_at = greatest(i.signals_expire_at, excluded.signals_expire_at),
        error_count = coalesce(i.error_count, 0) + excluded.error_count,
        high_signal_count = i.high_signal_count + excluded.high_signal_count,
        affected_services = i.affected_services || ARRAY(
            SELECT s FROM unnest(excluded.affected_services) AS s WHERE s <> ALL(i.affected_services)),
        severity = greatest(i.severity, excluded.severity,
            CASE WHEN $10::int8 > 0 AND i.high_signal_count + excluded.high_signal_count >= $10::int8
                 THEN 'CRITICAL'::incidentseverity END),
        last_signal_at = now(),
        analysis_requested_at = CASE
            WHEN excluded.analysis_requested_at IS NOT NULL AND (i.analysis_requested_at IS NULL
                 OR i.analysis_requested_at <= now() - make_interval(secs => $11::float8))
            THEN now() ELSE i.analysis_requested_at END
    RETURNING i.id, i.trace_id, i.trace_key, i.severity,
              i.analysis_requested_at = now() AS requested, i.xmax = 0 AS opened
),
faults AS (
    -- This batch's errors per fingerprint, and a trace of each that wants an analysis now.
    SELECT f.fingerprint, min(f.title) AS title, count(*) AS signals, max(f.severity) AS severity,
           array_agg(DISTINCT f.service_name::varchar) AS services,
           min(u.trace_key) FILTER (WHERE u.requested) AS wanting_trace, min(u.trace_key) AS any_trace
    FROM fresh f JOIN upserted u ON u.trace_key = f.trace_id
    WHERE f.fingerprint IS NOT NULL
    GROUP BY f.fingerprint
),
problems_upserted AS (
    -- In fingerprint order, like incidents in trace order: concurrent batches cannot deadlock.
    -- A problem claims the analysis (one per window) for its wanting trace when grouping is on
    -- ($14) and its last request is older than the window ($15 s).
    INSERT INTO problems AS p (fingerprint, title, signal_count, services, severity,
                               representative_trace_id, analysis_requested_at)
    SELECT fingerprint, title, signals, services, severity, coalesce(wanting_trace, any_trace),
           CASE WHEN $14::bool AND wanting_trace IS NOT NULL THEN now() END
    FROM faults ORDER BY fingerprint
    ON CONFLICT (fingerprint) DO UPDATE SET
        last_seen = now(),
        signal_count = p.signal_count + excluded.signal_count,
        services = p.services || ARRAY(
            SELECT s FROM unnest(excluded.services) AS s WHERE s <> ALL(p.services)),
        severity = greatest(p.severity, excluded.severity),
        representative_trace_id = CASE
            WHEN excluded.analysis_requested_at IS NOT NULL AND (p.analysis_requested_at IS NULL
                 OR p.analysis_requested_at <= now() - make_interval(secs => $15::float8))
            THEN excluded.representative_trace_id
            ELSE coalesce(p.representative_trace_id, excluded.representative_trace_id) END,
        analysis_requested_at = CASE
            WHEN excluded.analysis_requested_at IS NOT NULL AND (p.analysis_requested_at IS NULL
                 OR p.analysis_requested_at <= now() - make_interval(secs => $15::float8))
            THEN now() ELSE p.analysis_requested_at END
    RETURNING p.id, p.fingerprint, p.representative_trace_id,
              p.analysis_requested_at = now() AND $14::bool AS claimed
),
links AS (
    INSERT INTO incident_problems (incident_id, problem_id)
    SELECT DISTINCT u.id, pu.id
    FROM fresh f JOIN upserted u ON u.trace_key = f.trace_id JOIN problems_upserted pu ON pu.fingerprint = f.fingerprint
    ON CONFLICT DO NOTHING
    RETURNING 1
),
outbox AS (
    -- Per trace, unless grouping is on and the trace's errors belong to a problem: then only the
    -- trace that claimed its problem's analysis for this window.
    INSERT INTO analysis_outbox (trace_id, incident_id)
    SELECT u.trace_id, u.id FROM upserted u
    WHERE u.requested AND (
        NOT $14::bool
        OR NOT EXISTS (SELECT 1 FROM fresh f WHERE f.trace_id = u.trace_key AND f.fingerprint IS NOT NULL)
        OR EXISTS (SELECT 1 FROM problems_upserted pu WHERE pu.claimed AND pu.representative_trace_id = u.trace_key))
    RETURNING 1
)
SELECT ARRAY(SELECT id FROM inserted), ARRAY(SELECT "timestamp" FROM inserted),
       ARRAY(SELECT signal_type::text FROM inserted),
       (SELECT count(*) FROM upserted WHERE opened),
       (SELECT count(*) FROM upserted),
       (SELECT count(*) FROM outbox),
       ARRAY(SELECT severity::text FROM upserted WHERE opened),
       ARRAY(SELECT u.severity::text FROM upserted u JOIN prior p ON p.trace_key = u.trace_key
             WHERE NOT u.opened AND u.severity > p.severity),
       (SELECT count(*) FROM links)
"#;

/// A record without a time was stamped when it arrived, so its retry has another time: it is
/// recognised by its id among the rows flagged time_unknown (the caller holds a lock per such
/// id, so that two copies in flight cannot both pass this check). The lookup spans every
/// partition, and a statement that contains it opens, locks and initialises a scan of each, on
/// every execution, even when no row needs it: a cost that grows with the days kept. Only
/// batches with such records carry it.
const TIMELESS_CHECK: &str = "WHERE NOT (time_unknown AND EXISTS (
        SELECT 1 FROM raw_signals r WHERE r.time_unknown AND r.id = input.id AND r.signal_type = input.kind))";

/// The batch write, without and with [`TIMELESS_CHECK`].
static STATEMENTS: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
    [WRITE_BATCH.replace("/*TIMELESS_CHECK*/", ""), WRITE_BATCH.replace("/*TIMELESS_CHECK*/", TIMELESS_CHECK)]
});

/// Advisory-lock namespace of the per-id locks around records without a time (the two-key
/// form, a key space apart from the single-key locks of migrations and maintenance).
const TIMELESS_LOCK_SPACE: i32 = 0x5349_474e; // "SIGN"

impl Store {
    /// Stores `signals` and tracks their incidents atomically; returns after the commit.
    pub async fn write_batch(&self, signals: &[Signal], triage: &Triage) -> Result<BatchOutcome, StoreError> {
        if signals.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let rows = without_repeated_timeless(signals);
        let ids: Vec<Uuid> = rows.iter().map(|s| s.signal_id).collect();
        let types: Vec<&str> = rows.iter().map(|s| s.signal_type.as_str()).collect();
        let trace_ids: Vec<&str> = rows.iter().map(|s| s.trace_id.as_str()).collect();
        let services: Vec<&str> = rows.iter().map(|s| s.service_name.as_str()).collect();
        let timestamps: Vec<DateTime<Utc>> = rows.iter().map(|s| s.timestamp).collect();
        // Encoded once, by the mapping; PostgreSQL parses each into jsonb.
        let payloads: Vec<&str> = rows.iter().map(|s| s.payload.as_str()).collect();
        let shared_ids: Vec<Option<Uuid>> = rows.iter().map(|s| s.shared.as_ref().map(|p| p.id)).collect();
        let shared = distinct_shared(&rows);
        let shared_keys: Vec<Uuid> = shared.iter().map(|p| p.id).collect();
        let resources: Vec<&str> = shared.iter().map(|p| p.resource.as_str()).collect();
        let scopes: Vec<&str> = shared.iter().map(|p| p.scope.as_str()).collect();
        let time_unknown: Vec<bool> = rows.iter().map(|s| s.time_unknown).collect();
        let expires_at: Vec<Option<DateTime<Utc>>> = rows.iter().map(|s| self.expires_at(s)).collect();
        let assessed = triage.assess_all(&rows);
        let threshold = triage.rules.high_signals_to_critical as i64;
        let window = triage.analysis_window.as_secs_f64();
        let grouping = triage.problem_window.is_some();
        let problem_window = triage.problem_window.unwrap_or_default().as_secs_f64();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 21] = [
            &ids,
            &types,
            &trace_ids,
            &services,
            &timestamps,
            &payloads,
            &assessed.severities,
            &assessed.tracked,
            &assessed.requests_analysis,
            &threshold,
            &window,
            &assessed.fingerprints,
            &assessed.titles,
            &grouping,
            &problem_window,
            &time_unknown,
            &expires_at,
            &shared_ids,
            &shared_keys,
            &resources,
            &scopes,
        ];

        let mut client = self.client().await?;
        let locks = timeless_locks(&rows);
        let row = if locks.is_empty() {
            let statement = client.prepare_cached(&STATEMENTS[0]).await?;
            client.query_one(&statement, &params).await?
        } else {
            // Locks first, then the write in a statement of its own, whose snapshot sees a copy
            // that a concurrent batch committed while we waited.
            let tx = client.transaction().await?;
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, k) FROM unnest($2::int4[]) AS k ORDER BY k",
                &[&TIMELESS_LOCK_SPACE, &locks],
            )
            .await?;
            let statement = tx.prepare_cached(&STATEMENTS[1]).await?;
            let row = tx.query_one(&statement, &params).await?;
            tx.commit().await?;
            row
        };
        let ids: Vec<Uuid> = row.try_get(0)?;
        let times: Vec<DateTime<Utc>> = row.try_get(1)?;
        let kinds: Vec<String> = row.try_get(2)?;
        let inserted_keys: HashSet<SignalKey> = ids
            .into_iter()
            .zip(times)
            .zip(kinds)
            .filter_map(|((id, at), kind)| Some((id, at, SignalType::parse(&kind)?)))
            .collect();
        let (opened, upserted, requested): (i64, i64, i64) =
            (row.try_get(3)?, row.try_get(4)?, row.try_get(5)?);
        let severities = |column: usize| -> Result<Vec<IncidentSeverity>, StoreError> {
            let labels: Vec<String> = row.try_get(column)?;
            Ok(labels.iter().filter_map(|label| IncidentSeverity::from_db_label(label)).collect())
        };
        Ok(BatchOutcome {
            inserted: inserted_keys.len() as u64,
            duplicates: (signals.len() - inserted_keys.len()) as u64,
            inserted_keys,
            incidents_opened: opened as u64,
            incidents_updated: (upserted - opened) as u64,
            analyses_requested: requested as u64,
            opened_severities: severities(6)?,
            escalated_severities: severities(7)?,
            problem_links: row.try_get::<_, i64>(8)? as u64,
        })
    }

    /// When `signal`'s partition will have been dropped: its time plus its type's retention plus
    /// one partition length (a partition goes once its end is past the retention); `None` when
    /// the type is kept forever.
    fn expires_at(&self, signal: &Signal) -> Option<DateTime<Utc>> {
        let keep = self.settings.retention.of(signal.signal_type)?;
        let until = keep + self.settings.partition_interval.length();
        Some(signal.timestamp + chrono::Duration::from_std(until).ok()?)
    }
}

/// The batch's signals, with a record without a time that repeats an earlier one of the batch
/// (two copies of a retry in flight) left out: their receipt times differ, so the key would
/// not see them as one.
fn without_repeated_timeless(signals: &[Signal]) -> Vec<&Signal> {
    let mut seen = HashSet::new();
    signals.iter().filter(|s| !s.time_unknown || seen.insert((s.signal_id, s.signal_type))).collect()
}

/// The shared parts the batch's signals refer to, each once (most batches carry a few exports,
/// each with one resource and scope for hundreds of records).
fn distinct_shared<'a>(rows: &[&'a Signal]) -> Vec<&'a Shared> {
    let mut seen = HashSet::new();
    rows.iter().filter_map(|s| s.shared.as_deref()).filter(|p| seen.insert(p.id)).collect()
}

/// The lock keys of the batch's records without a time, sorted (one locking order for all
/// batches, so they cannot deadlock) and without repeats.
fn timeless_locks(rows: &[&Signal]) -> Vec<i32> {
    let mut keys: Vec<i32> = rows
        .iter()
        .filter(|s| s.time_unknown)
        .map(|s| {
            let bytes = s.signal_id.as_bytes();
            i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}
