//! Per-service activity (`GET /query/services`) at a cost that does not grow with the signals
//! stored or the rate they arrive at (migrations/0013). The batch that stores signals also
//! counts them, per service, type and minute, in rows of its own (`service_minutes`, not
//! `merged`): appended, never updated, so concurrent batches never wait for each other there.
//! The maintenance merges them, often, into one row per minute (`merged`) and adds them to the
//! hour (`service_hours`, the sum of the hour's merged minutes). A range, on whole minutes, is
//! answered from the hours it covers whole, the merged minutes of its partial hours and the
//! batches' rows not merged yet: at most a day's hours and two hours' minutes, and never a
//! signal.
//!
//! The counts equal what `raw_signals` holds: a partition change (expiry, the size budget, the
//! default partition emptied) records its range as stale in the same transaction, and the next
//! merge recounts that range from the signals left. Merges and recounts hold the maintenance
//! lock, so they never interleave; each is one statement where it must see one snapshot.

use chrono::{DateTime, TimeDelta, Utc};
use deadpool_postgres::Transaction;

use super::partitions::{take_lock, Turn};
use super::{Store, StoreError};
use crate::model::payload::is_error_sql;
use crate::model::SignalType;

/// One service's activity over a time range.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSummary {
    pub service_name: String,
    pub logs: i64,
    pub traces: i64,
    pub metrics: i64,
    /// Error signals ([`crate::model::payload::Facts::is_error`]).
    pub errors: i64,
    pub last_seen: DateTime<Utc>,
}

/// What one merge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Merged {
    /// Batch rows merged into their minutes and hours.
    pub batch_rows: u64,
    /// Stale ranges recounted from the signals.
    pub recounted: u64,
}

/// A range on whole minutes (UTC): the start at or before the one asked for, the end at or
/// after it. Counting is per minute, so a range is answered on whole minutes; the caller is
/// told which (for a range ending now, the current minute holds everything stored so far).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteRange {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl MinuteRange {
    /// `None` for a time too far out to round (PostgreSQL refuses those anyway).
    pub fn around(start: DateTime<Utc>, end: DateTime<Utc>) -> Option<MinuteRange> {
        let minute = TimeDelta::minutes(1);
        Some(MinuteRange { start: floor(start, minute)?, end: ceil(end, minute)? })
    }

    /// The whole hours inside: `[hours, hours_end)`, empty (both at `end`) when there are none.
    fn hours(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let hour = TimeDelta::hours(1);
        match (ceil(self.start, hour), floor(self.end, hour)) {
            (Some(hours), Some(hours_end)) if hours < hours_end => (hours, hours_end),
            _ => (self.end, self.end),
        }
    }
}

/// `at` rounded down to a multiple of `step` (whole seconds) since the epoch. On seconds, not
/// `duration_trunc`'s nanoseconds, which overflow beyond the years 1677 to 2262.
fn floor(at: DateTime<Utc>, step: TimeDelta) -> Option<DateTime<Utc>> {
    let (seconds, step) = (at.timestamp(), step.num_seconds().max(1));
    DateTime::from_timestamp(seconds.div_euclid(step) * step, 0)
}

fn ceil(at: DateTime<Utc>, step: TimeDelta) -> Option<DateTime<Utc>> {
    let floor = floor(at, step)?;
    if floor == at {
        Some(at)
    } else {
        floor.checked_add_signed(step)
    }
}

/// Batch rows summed into merged minutes and their hours, in one statement: the rows deleted
/// are exactly the rows added (a batch committing meanwhile keeps its row for the next merge).
/// In key order, like every upsert here.
const MERGE: &str = "
    WITH gone AS (
        DELETE FROM service_minutes WHERE NOT merged
        RETURNING service_name, signal_type, minute, signals, errors, last_seen
    ),
    sums AS (
        SELECT service_name, signal_type, minute, sum(signals)::int8 AS signals, sum(errors)::int8 AS errors,
               max(last_seen) AS last_seen
        FROM gone GROUP BY 1, 2, 3
    ),
    minutes AS (
        INSERT INTO service_minutes AS m (service_name, signal_type, minute, signals, errors, last_seen, merged)
        SELECT service_name, signal_type, minute, signals, errors, last_seen, true FROM sums
        ORDER BY minute, service_name, signal_type
        ON CONFLICT (minute, service_name, signal_type) WHERE merged DO UPDATE SET
            signals = m.signals + excluded.signals, errors = m.errors + excluded.errors,
            last_seen = greatest(m.last_seen, excluded.last_seen)
    ),
    hours AS (
        INSERT INTO service_hours AS h (service_name, signal_type, hour, signals, errors, last_seen)
        SELECT service_name, signal_type, date_bin('1 hour', minute, timestamptz 'epoch'), sum(signals), sum(errors),
               max(last_seen)
        FROM sums GROUP BY 1, 2, 3 ORDER BY 3, 1, 2
        ON CONFLICT (hour, service_name, signal_type) DO UPDATE SET
            signals = h.signals + excluded.signals, errors = h.errors + excluded.errors,
            last_seen = greatest(h.last_seen, excluded.last_seen)
    )
    SELECT count(*) FROM gone";

/// Joined to the insert of a recount, so that its `gone` (the rows it replaces) has run to the
/// end before the first row is inserted: a statement's sub-statements run in no set order, and
/// one left unread runs last, after the insert had met the rows it was to replace.
const AFTER_GONE: &str = "(SELECT count(*) FROM gone) AS after_gone";

/// `$1` a type or NULL (every type); `$2`, `$3` the bounds or NULL (unbounded).
const OF_TYPE: &str = "($1::text IS NULL OR signal_type = $1::text::signaltypeenum)";

/// A stale range's minutes counted again from the signals left, in one statement: what it
/// deletes and what it counts are of one snapshot, so a batch storing a late signal in the
/// range meanwhile is counted once (its own row, not merged yet, survives).
fn recount_minutes() -> String {
    format!(
        r#"WITH gone AS (
               DELETE FROM service_minutes
               WHERE {OF_TYPE} AND minute >= coalesce($2::timestamptz, '-infinity') AND minute < coalesce($3::timestamptz, 'infinity')
               RETURNING 1
           )
           INSERT INTO service_minutes (service_name, signal_type, minute, signals, errors, last_seen, merged)
           SELECT service_name, signal_type, date_bin('1 minute', "timestamp", timestamptz 'epoch'), count(*),
                  count(*) FILTER (WHERE {is_error}), max("timestamp"), true
           FROM raw_signals_between($1::text::signaltypeenum, coalesce($2::timestamptz, '-infinity'),
                                    coalesce($3::timestamptz, 'infinity')), {AFTER_GONE}
           WHERE {OF_TYPE} AND "timestamp" >= coalesce($2::timestamptz, '-infinity') AND "timestamp" < coalesce($3::timestamptz, 'infinity')
           GROUP BY 1, 2, 3"#,
        is_error = is_error_sql()
    )
}

/// The hours around a recounted range, again the sums of their merged minutes.
fn recount_hours() -> String {
    format!(
        r#"WITH gone AS (
               DELETE FROM service_hours
               WHERE {OF_TYPE} AND hour >= coalesce($2::timestamptz, '-infinity') AND hour < coalesce($3::timestamptz, 'infinity')
               RETURNING 1
           )
           INSERT INTO service_hours (service_name, signal_type, hour, signals, errors, last_seen)
           SELECT service_name, signal_type, date_bin('1 hour', minute, timestamptz 'epoch'), sum(signals), sum(errors),
                  max(last_seen)
           FROM service_minutes, {AFTER_GONE}
           WHERE merged AND {OF_TYPE}
             AND minute >= coalesce($2::timestamptz, '-infinity') AND minute < coalesce($3::timestamptz, 'infinity')
           GROUP BY 1, 2, 3"#
    )
}

/// Records that the counts of `[starts, ends)` (unbounded where `None`) of `signal_type` (every
/// type where `None`) no longer match the signals: called in the transaction that changes them.
pub(super) async fn mark_stale(
    tx: &Transaction<'_>,
    signal_type: Option<SignalType>,
    starts: Option<DateTime<Utc>>,
    ends: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO service_activity_stale (signal_type, starts, ends) VALUES ($1::text::signaltypeenum, $2, $3)",
        &[&signal_type.map(SignalType::as_str), &starts, &ends],
    )
    .await?;
    Ok(())
}

async fn recount(
    tx: &Transaction<'_>,
    signal_type: Option<&str>,
    starts: Option<DateTime<Utc>>,
    ends: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    // Whole minutes, then the whole hours around them (a bound too far out to round is
    // unbounded: it is past any signal).
    let minutes = (
        starts.and_then(|s| floor(s, TimeDelta::minutes(1))),
        ends.and_then(|e| ceil(e, TimeDelta::minutes(1))),
    );
    tx.execute(&recount_minutes(), &[&signal_type, &minutes.0, &minutes.1]).await?;
    let hours = (
        minutes.0.and_then(|s| floor(s, TimeDelta::hours(1))),
        minutes.1.and_then(|e| ceil(e, TimeDelta::hours(1))),
    );
    tx.execute(&recount_hours(), &[&signal_type, &hours.0, &hours.1]).await?;
    Ok(())
}

impl Store {
    /// Recounts the stale ranges, then merges the batch rows. `None`: another instance holds
    /// the maintenance lock (`Turn::SkipIfBusy`).
    pub async fn merge_activity(&self, turn: Turn) -> Result<Option<Merged>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if !take_lock(&tx, turn).await? {
            return Ok(None);
        }
        let stale = tx
            .query("DELETE FROM service_activity_stale RETURNING signal_type::text, starts, ends", &[])
            .await?;
        if !stale.is_empty() && self.settings.layout.is_distributed() {
            // On Citus the recount reads the signals on the workers, with snapshots of their
            // own, not the one its DELETE of the minutes sees: a batch committing in between
            // would be counted by its own row and again by the recount. Waiting for the batches
            // writing minutes, and holding the next ones back until the commit, keeps each
            // batch on one side.
            tx.batch_execute("LOCK TABLE service_minutes IN SHARE ROW EXCLUSIVE MODE").await?;
        }
        for row in &stale {
            recount(&tx, row.try_get(0)?, row.try_get(1)?, row.try_get(2)?).await?;
        }
        let batch_rows: i64 = tx.query_one(MERGE, &[]).await?.try_get(0)?;
        tx.commit().await?;
        Ok(Some(Merged { batch_rows: batch_rows as u64, recounted: stale.len() as u64 }))
    }

    /// Per service, its signals in `range` by type, its errors and its latest signal: the
    /// hours `range` covers whole, the merged minutes around them and the batches' rows not
    /// merged yet. At most a day's hours and two hours' minutes, whatever is stored.
    pub async fn service_summaries(&self, range: MinuteRange) -> Result<Vec<ServiceSummary>, StoreError> {
        let (hours, hours_end) = range.hours();
        let client = self.read_client().await?;
        let sql = r#"SELECT service_name,
                            sum(signals) FILTER (WHERE signal_type = 'log')::int8 AS logs,
                            sum(signals) FILTER (WHERE signal_type = 'trace')::int8 AS traces,
                            sum(signals) FILTER (WHERE signal_type = 'metric')::int8 AS metrics,
                            sum(errors)::int8 AS errors, max(last_seen) AS last_seen
                     FROM (
                         SELECT service_name, signal_type, signals, errors, last_seen FROM service_hours
                         WHERE hour >= $2 AND hour < $3
                         UNION ALL
                         SELECT service_name, signal_type, signals, errors, last_seen FROM service_minutes
                         WHERE merged AND ((minute >= $1 AND minute < $2) OR (minute >= $3 AND minute < $4))
                         UNION ALL
                         SELECT service_name, signal_type, signals, errors, last_seen FROM service_minutes
                         WHERE NOT merged AND minute >= $1 AND minute < $4
                     ) AS counts
                     GROUP BY service_name ORDER BY service_name"#;
        let rows = client.query(sql, &[&range.start, &hours, &hours_end, &range.end]).await?;
        rows.iter()
            .map(|row| {
                let count = |column: &str| -> Result<i64, StoreError> {
                    Ok(row.try_get::<_, Option<i64>>(column)?.unwrap_or(0))
                };
                Ok(ServiceSummary {
                    service_name: row.try_get("service_name")?,
                    logs: count("logs")?,
                    traces: count("traces")?,
                    metrics: count("metrics")?,
                    errors: count("errors")?,
                    last_seen: row.try_get("last_seen")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("a test time")
    }

    fn around(start: &str, end: &str) -> MinuteRange {
        MinuteRange::around(at(start), at(end)).expect("roundable")
    }

    #[test]
    fn a_range_is_widened_to_whole_minutes() {
        let range = around("2026-12-04T10:15:30.5Z", "2026-12-05T10:15:30.5Z");
        assert_eq!((range.start, range.end), (at("2026-12-04T10:15:00Z"), at("2026-12-05T10:16:00Z")));
        let aligned = around("2026-12-04T00:00:00Z", "2026-12-05T00:00:00Z");
        assert_eq!((aligned.start, aligned.end), (at("2026-12-04T00:00:00Z"), at("2026-12-05T00:00:00Z")));
    }

    #[test]
    fn a_day_is_its_whole_hours_and_the_minutes_around_them() {
        let range = around("2026-12-04T10:15:30Z", "2026-12-05T10:15:30Z");
        assert_eq!(range.hours(), (at("2026-12-04T11:00:00Z"), at("2026-12-05T10:00:00Z")));
    }

    #[test]
    fn less_than_a_whole_hour_is_minutes_only() {
        for (start, end) in [
            ("2026-12-05T10:15:30Z", "2026-12-05T11:10:00Z"),
            ("2026-12-05T10:00:00Z", "2026-12-05T10:59:00Z"),
            ("2026-12-05T10:15:30Z", "2026-12-05T10:15:40Z"),
        ] {
            let range = around(start, end);
            assert_eq!(range.hours(), (range.end, range.end), "{start}..{end}");
        }
        let hour = around("2026-12-05T10:00:00Z", "2026-12-05T11:00:00Z");
        assert_eq!(hour.hours(), (at("2026-12-05T10:00:00Z"), at("2026-12-05T11:00:00Z")));
    }
}
