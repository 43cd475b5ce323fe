//! The soak's series: what the load, the polls and the consumer saw during each minute, and
//! what the database, the server and the canary say at its end; one CSV row per minute.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::BoxError;

/// What happened during the current minute, filled by the tasks, taken by the sampler.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// Signals acknowledged by the service.
    pub acked: u64,
    /// Writes answered with anything but success (5xx counted again below).
    pub refused: u64,
    /// 5xx answers anywhere (writes and polls) and gRPC UNAVAILABLE/INTERNAL.
    pub server_errors: u64,
    /// Requests that got no answer at all.
    pub transport_errors: u64,
    /// Latency samples per polled query, microseconds.
    pub polls: BTreeMap<&'static str, Vec<u32>>,
    pub analyses_consumed: u64,
    /// Messages on the queue that a Celery worker would refuse.
    pub malformed_tasks: u64,
    /// Analysed traces read whole after their type's retention, and ones that were not.
    pub evidence_whole: u64,
    pub evidence_incomplete: u64,
    /// Healthy traces gone after their retention, and ones still there.
    pub noise_gone: u64,
    pub noise_left: u64,
    /// The largest database size seen by the fast sampler.
    pub db_max_bytes: i64,
}

pub type Shared = Arc<Mutex<Window>>;

pub fn lock(window: &Shared) -> MutexGuard<'_, Window> {
    window.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One minute of the run.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub minute: u32,
    pub elapsed_s: f64,
    pub db_bytes: i64,
    /// Per table (partitions counted in their parent): total bytes (heap, indexes, TOAST) and
    /// dead tuples.
    pub tables: BTreeMap<String, (i64, i64)>,
    pub rss_mib: f64,
    /// PostgreSQL connections the server holds open (in use and idle) at the sample: each keeps
    /// buffers as large as the largest answer it carried, so a step in RSS that comes with more
    /// connections is the pool, not a leak.
    pub pool_open: f64,
    /// Signals acknowledged to no one yet (the ingest queue) at the sample.
    pub queue_signals: f64,
    pub cpu_cores: f64,
    pub ingest_per_s: f64,
    /// What the load, the polls, the probes and the consumer saw in the minute.
    pub seen: Window,
    /// The canary's counters so far: checks, writes, failures by kind.
    pub canary: BTreeMap<String, f64>,
    /// The server's counters so far.
    pub dropped_age: f64,
    pub dropped_size: f64,
    pub disk_full_failures: f64,
}

/// Each table's size with its indexes and TOAST, partitions summed into their root, and its
/// dead tuples.
///
/// The size is the main fork of the table, of its TOAST table and of their indexes: every page
/// of rows and index entries, dead tuples included. Not the free space and visibility maps:
/// a table's first VACUUM creates both at once (24 KiB and 8 KiB, even for a table of a few
/// rows), which the growth rule read as growth in the cycle where it happened (the reference
/// run of 3c6b6bb, BENCHMARKS.md); after that they follow the main fork (about one byte and
/// two bits per page), so leaving them out hides no growth. `pg_database_size` counts them.
pub async fn tables(db: &tokio_postgres::Client) -> Result<BTreeMap<String, (i64, i64)>, BoxError> {
    let rows = db
        .query(
            "WITH rel AS (
                 SELECT c.oid, coalesce(pg_partition_root(c.oid), c.oid)::regclass::text AS root,
                        array_remove(ARRAY[c.oid, nullif(c.reltoastrelid, 0)], NULL) AS heaps
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND c.relkind = 'r'
             )
             SELECT rel.root, sum(forks.main)::int8, sum(coalesce(s.n_dead_tup, 0))::int8
             FROM rel
             CROSS JOIN LATERAL (
                 SELECT sum(pg_relation_size(f.r, 'main')) AS main
                 FROM (SELECT unnest(rel.heaps)
                       UNION ALL SELECT i.indexrelid FROM pg_index i WHERE i.indrelid = ANY (rel.heaps)) f (r)
             ) forks
             LEFT JOIN pg_stat_user_tables s ON s.relid = rel.oid
             GROUP BY 1",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get::<_, String>(0), (r.get(1), r.get(2)))).collect())
}

/// The sum of every sample of `metric` whose labels contain each of `labels` (Prometheus text).
pub fn metric(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(key, _)| {
            let name = key.split('{').next().unwrap_or_default();
            name == metric && labels.iter().all(|l| key.contains(l))
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum::<f64>()
        // A sum of nothing is -0.0.
        + 0.0
}

pub fn percentile_ms(samples: &[u32], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted[((sorted.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0
}

/// The canary's failure kinds, in the CSV's order.
pub const CANARY_KINDS: [&str; 7] =
    ["missing", "incorrect", "duplicate", "expired_early", "expired_late", "late", "request_failed"];

pub fn write_csv(rows: &[Row], path: &str, budget: Option<u64>) -> Result<(), BoxError> {
    let tables: Vec<String> = {
        let mut names: Vec<String> = rows.iter().flat_map(|r| r.tables.keys().cloned()).collect();
        names.sort();
        names.dedup();
        names
    };
    let queries: Vec<&'static str> = {
        let mut names: Vec<&'static str> = rows.iter().flat_map(|r| r.seen.polls.keys().copied()).collect();
        names.sort();
        names.dedup();
        names
    };
    let mut header: Vec<String> = [
        "minute",
        "elapsed_s",
        "db_bytes",
        "db_max_bytes",
        "budget_bytes",
        "rss_mib",
        "pool_open",
        "queue_signals",
        "cpu_cores",
        "ingest_per_s",
        "acked",
        "refused",
        "server_errors",
        "transport_errors",
        "analyses_consumed",
        "malformed_tasks",
        "evidence_whole",
        "evidence_incomplete",
        "noise_gone",
        "noise_left",
        "dropped_age",
        "dropped_size",
        "disk_full_failures",
        "canary_checks",
        "canary_writes",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(CANARY_KINDS.iter().map(|k| format!("canary_{k}")));
    for q in &queries {
        header.push(format!("p50_ms_{q}"));
        header.push(format!("p99_ms_{q}"));
    }
    for t in &tables {
        header.push(format!("bytes_{t}"));
        header.push(format!("dead_{t}"));
    }
    let mut out = header.join(",");
    out.push('\n');
    for r in rows {
        let mut cells: Vec<String> = vec![
            r.minute.to_string(),
            format!("{:.1}", r.elapsed_s),
            r.db_bytes.to_string(),
            r.seen.db_max_bytes.to_string(),
            budget.unwrap_or(0).to_string(),
            format!("{:.1}", r.rss_mib),
            r.pool_open.to_string(),
            r.queue_signals.to_string(),
            format!("{:.3}", r.cpu_cores),
            format!("{:.1}", r.ingest_per_s),
            r.seen.acked.to_string(),
            r.seen.refused.to_string(),
            r.seen.server_errors.to_string(),
            r.seen.transport_errors.to_string(),
            r.seen.analyses_consumed.to_string(),
            r.seen.malformed_tasks.to_string(),
            r.seen.evidence_whole.to_string(),
            r.seen.evidence_incomplete.to_string(),
            r.seen.noise_gone.to_string(),
            r.seen.noise_left.to_string(),
            r.dropped_age.to_string(),
            r.dropped_size.to_string(),
            r.disk_full_failures.to_string(),
            r.canary.get("checks").copied().unwrap_or(0.0).to_string(),
            r.canary.get("writes").copied().unwrap_or(0.0).to_string(),
        ];
        cells.extend(CANARY_KINDS.iter().map(|k| r.canary.get(*k).copied().unwrap_or(0.0).to_string()));
        for q in &queries {
            let samples = r.seen.polls.get(q).map(Vec::as_slice).unwrap_or_default();
            cells.push(format!("{:.2}", percentile_ms(samples, 0.5)));
            cells.push(format!("{:.2}", percentile_ms(samples, 0.99)));
        }
        for t in &tables {
            let (bytes, dead) = r.tables.get(t).copied().unwrap_or_default();
            cells.push(bytes.to_string());
            cells.push(dead.to_string());
        }
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    std::fs::write(path, out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_is_summed_over_the_samples_whose_labels_match() {
        let text = "# HELP x\nprodsentinel_canary_check_failures_total{check=\"read\",kind=\"missing\"} 2\n\
                    prodsentinel_canary_check_failures_total{check=\"spot\",kind=\"missing\"} 3\n\
                    prodsentinel_canary_check_failures_total{check=\"spot\",kind=\"late\"} 7\n";
        let total = metric(text, "prodsentinel_canary_check_failures_total", &["kind=\"missing\""]);
        assert_eq!(total, 5.0);
    }
}
