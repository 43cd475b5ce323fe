//! Calls between services (`GET /jaeger/api/dependencies`), from a rollup the maintenance keeps
//! (`span_dependencies`, migrations/0017), so a 7-day graph sums at most 1,008 buckets' rows
//! instead of joining a week of spans.
//!
//! A bucket is ten minutes of span start times, computed once, when it ended [`SETTLE`] ago: a
//! span whose parent belongs to another service counts one call from the parent's service to
//! its own. The parent is looked for among the spans that started from one bucket before to one
//! after (a parent starts before its children; the bucket after covers clocks that disagree).
//! What the rollup does not see, and Jaeger's own batch job does not either: a parent that
//! started more than ten minutes before its child, and spans that arrive after their bucket
//! was computed.

use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use super::{Store, StoreError};
use crate::model::SignalType;

/// The rollup's resolution.
pub const BUCKET: TimeDelta = TimeDelta::minutes(10);

/// A bucket is computed once it ended this long ago: the spans in it have arrived by then.
pub const SETTLE: TimeDelta = TimeDelta::minutes(5);

/// The first computation reaches back this far: the longest lookback the Jaeger UI offers.
const BACKFILL: TimeDelta = TimeDelta::days(7);

/// Calls from one service to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub parent: String,
    pub child: String,
    pub call_count: i64,
}

/// The calls of one bucket (`$1`, its length `$2` as interval text), from its spans and the
/// parents around them. Public for the benchmark, which times it on a loaded database.
pub const COMPUTE_BUCKET: &str = r#"
    INSERT INTO span_dependencies (bucket, parent, child, call_count)
    SELECT $1, p.service_name, c.service_name, count(*)
    FROM raw_signal_rows c
    JOIN raw_signal_rows p ON p.trace_id = c.trace_id AND p.payload->>'span_id' = c.payload->>'parent_span_id'
    WHERE c.signal_type = 'trace' AND c."timestamp" >= $1 AND c."timestamp" < $1 + $2::text::interval
      AND p.signal_type = 'trace' AND p."timestamp" >= $1 - $2::text::interval AND p."timestamp" < $1 + 2 * $2::text::interval
      AND p.service_name <> c.service_name
    GROUP BY 2, 3
    ON CONFLICT (bucket, parent, child) DO NOTHING"#;

fn floor(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(BUCKET).unwrap_or(at)
}

impl Store {
    /// Computes the settled buckets not computed yet, oldest first, for at most `budget`;
    /// returns how many. Buckets without spans are skipped without a query each. Instances
    /// share the work: a bucket is claimed by its row in `span_dependency_buckets`.
    pub async fn compute_dependencies(
        &self,
        now: DateTime<Utc>,
        budget: Duration,
    ) -> Result<u64, StoreError> {
        let started = Instant::now();
        let settled = now - SETTLE;
        let reach =
            self.settings.lifecycle.signals.of(SignalType::Trace).map_or(BACKFILL, |kept| {
                TimeDelta::from_std(kept).map_or(BACKFILL, |kept| kept.min(BACKFILL))
            });
        let earliest = floor(now - reach);
        let bucket_length = pg_interval(BUCKET);
        let mut computed = 0;
        while started.elapsed() < budget {
            let mut client = self.client().await?;
            let done: Option<DateTime<Utc>> =
                client.query_one("SELECT max(bucket) FROM span_dependency_buckets", &[]).await?.try_get(0)?;
            let from = done.map_or(earliest, |done| (done + BUCKET).max(earliest));
            let first: Option<DateTime<Utc>> = client
                .query_one(
                    r#"SELECT min("timestamp") FROM raw_signal_rows
                       WHERE signal_type = 'trace' AND "timestamp" >= $1 AND "timestamp" < $2"#,
                    &[&from, &settled],
                )
                .await?
                .try_get(0)?;
            let Some(bucket) = first.map(floor) else { break };
            if bucket + BUCKET > settled {
                break;
            }
            let tx = client.transaction().await?;
            let claimed = tx
                .execute(
                    "INSERT INTO span_dependency_buckets (bucket) VALUES ($1) ON CONFLICT DO NOTHING",
                    &[&bucket],
                )
                .await?;
            if claimed == 1 {
                tx.execute(COMPUTE_BUCKET, &[&bucket, &bucket_length]).await?;
                computed += 1;
            }
            tx.commit().await?;
        }
        Ok(computed)
    }

    /// The calls between services whose spans started in `[start, end)`, on whole buckets.
    pub async fn dependencies(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<Dependency>, StoreError> {
        let client = self.read_client().await?;
        let rows = client
            .query(
                "SELECT parent, child, sum(call_count)::int8 FROM span_dependencies
                 WHERE bucket >= $1 AND bucket < $2 GROUP BY 1, 2 ORDER BY 1, 2",
                &[&floor(start), &end],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Dependency { parent: r.try_get(0)?, child: r.try_get(1)?, call_count: r.try_get(2)? })
            })
            .collect()
    }

    /// Deletes the buckets older than spans are kept; nothing while spans are kept forever.
    pub async fn expire_dependencies(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let Some(kept) = self.settings.lifecycle.signals.of(SignalType::Trace) else { return Ok(0) };
        let Ok(kept) = TimeDelta::from_std(kept) else { return Ok(0) };
        let before = floor(now - kept);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let deleted = tx.execute("DELETE FROM span_dependencies WHERE bucket < $1", &[&before]).await?;
        tx.execute("DELETE FROM span_dependency_buckets WHERE bucket < $1", &[&before]).await?;
        tx.commit().await?;
        Ok(deleted)
    }
}

/// `length` as PostgreSQL interval text.
fn pg_interval(length: TimeDelta) -> String {
    format!("{} seconds", length.num_seconds())
}
