//! The soak's figures against issue 21's targets, from the rows of one run.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::sample::{percentile_ms, Row, CANARY_KINDS};
use super::{RunSpec, CHECK_SECONDS, CYCLE};

/// Above this per cycle, a table's trend counts as growth (the sizes move by a partition's worth
/// as partitions come and go).
const GROWTH_TOLERANCE: f64 = 0.05;

/// The least-squares slope of `means` (one per cycle), as a fraction of their mean: how much the
/// table grows per cycle. Up to the run on a7d391d growth was the largest step between two
/// neighbouring cycles, and the largest of four noisy steps flagged tables of four pages that
/// moved by one page both ways (service_hours 33.6, 32.8, 34.4, 32.8, 33.6 KB: "5.000000000000004
/// %"). A trend still catches a table that steps up once and stays: 100, 100, 120, 120, 120 is
/// +5.4 % per cycle. `None` with fewer than two cycles.
fn trend_per_cycle(means: &[f64]) -> Option<f64> {
    if means.len() < 2 {
        return None;
    }
    let xs: Vec<f64> = (0..means.len()).map(|i| i as f64).collect();
    let (x_mean, y_mean) = (mean(&xs), mean(means));
    let covariance: f64 = xs.iter().zip(means).map(|(x, y)| (x - x_mean) * (y - y_mean)).sum();
    let variance: f64 = xs.iter().map(|x| (x - x_mean).powi(2)).sum();
    Some(if y_mean > 0.0 { covariance / variance / y_mean } else { 0.0 })
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// Largest distance from the mean, as a fraction of it.
fn spread(values: &[f64]) -> f64 {
    let m = mean(values);
    values.iter().map(|v| (v - m).abs() / m).fold(0.0, f64::max)
}

pub fn judge(rows: &[Row], spec: RunSpec) -> Value {
    let cycle = CYCLE.as_secs_f64();
    let steady: Vec<&Row> = rows.iter().filter(|r| r.elapsed_s > cycle).collect();
    let sizes: Vec<f64> = steady.iter().map(|r| r.db_bytes as f64).collect();
    let rss: Vec<f64> = steady.iter().map(|r| r.rss_mib).collect();

    // Each table's mean size per whole cycle after the first; growth from one to the next.
    let cycles = (rows.last().map_or(0.0, |r| r.elapsed_s) / cycle).floor() as usize;
    let mut tables: BTreeMap<String, Value> = BTreeMap::new();
    let names: Vec<String> = rows.iter().flat_map(|r| r.tables.keys().cloned()).collect();
    for name in names {
        if tables.contains_key(&name) {
            continue;
        }
        let means: Vec<f64> = (1..cycles)
            .map(|k| {
                let sizes: Vec<f64> = rows
                    .iter()
                    .filter(|r| r.elapsed_s > k as f64 * cycle && r.elapsed_s <= (k + 1) as f64 * cycle)
                    .map(|r| r.tables.get(&name).map_or(0.0, |t| t.0 as f64))
                    .collect();
                mean(&sizes)
            })
            .collect();
        // The largest step between neighbouring cycles, reported beside the trend that judges.
        let step = means
            .windows(2)
            .map(|w| if w[0] > 0.0 { w[1] / w[0] - 1.0 } else { 0.0 })
            .fold(f64::MIN, f64::max);
        let step = if means.len() < 2 { Value::Null } else { json!(step) };
        let trend = trend_per_cycle(&means);
        let grows = trend.is_some_and(|t| t > GROWTH_TOLERANCE);
        tables.insert(
            name,
            json!({"cycle_mean_bytes": means, "growth_per_cycle": trend, "max_step": step, "grows": grows}),
        );
    }

    // p99 of each poll, second quarter against last.
    let length = spec.length.as_secs_f64();
    let quarter = |q: f64| -> BTreeMap<&'static str, Vec<u32>> {
        let mut pooled: BTreeMap<&'static str, Vec<u32>> = BTreeMap::new();
        for r in
            rows.iter().filter(|r| r.elapsed_s > q * length / 4.0 && r.elapsed_s <= (q + 1.0) * length / 4.0)
        {
            for (query, samples) in &r.seen.polls {
                pooled.entry(query).or_default().extend(samples);
            }
        }
        pooled
    };
    let (second, last) = (quarter(1.0), quarter(3.0));
    let polls: BTreeMap<&str, Value> = second
        .iter()
        .map(|(query, samples)| {
            let before = percentile_ms(samples, 0.99);
            let after = last.get(query).map_or(f64::NAN, |s| percentile_ms(s, 0.99));
            (
                *query,
                json!({"p99_ms_second_quarter": before, "p99_ms_last_quarter": after, "ratio": after / before,
                             "met": after / before <= 1.25}),
            )
        })
        .collect();
    let all_services: Vec<u32> =
        rows.iter().flat_map(|r| r.seen.polls.get("services").cloned().unwrap_or_default()).collect();

    let end = rows.last().cloned().unwrap_or_default();
    let canary: BTreeMap<&str, f64> =
        CANARY_KINDS.iter().map(|k| (*k, end.canary.get(*k).copied().unwrap_or(0.0))).collect();
    let sum = |f: fn(&Row) -> u64| rows.iter().map(f).sum::<u64>();

    // The budget: never above it by more than one size check's worth of ingest (the growth
    // rate before anything expired, times the check interval).
    let budget = spec.budget.map(|budget| {
        let early: Vec<&Row> = rows.iter().filter(|r| r.elapsed_s <= 180.0).collect();
        let growth_per_s = match (early.first(), early.last()) {
            (Some(a), Some(b)) if b.elapsed_s > a.elapsed_s => {
                (b.db_bytes - a.db_bytes) as f64 / (b.elapsed_s - a.elapsed_s)
            }
            _ => f64::NAN,
        };
        let allowance = growth_per_s * CHECK_SECONDS as f64;
        let largest = rows.iter().map(|r| r.seen.db_max_bytes).max().unwrap_or(0);
        json!({
            "budget_bytes": budget,
            "largest_bytes": largest,
            "one_check_of_ingest_bytes": allowance,
            "met": (largest as f64) <= budget as f64 + allowance,
            "disk_full_failures": end.disk_full_failures,
            "partitions_dropped_for_size": end.dropped_size,
        })
    });

    json!({
        "database": {"mean_bytes": mean(&sizes), "max_spread": spread(&sizes), "met": spread(&sizes) <= 0.15},
        "rss": {"mean_mib": mean(&rss), "max_spread": spread(&rss), "met": spread(&rss) <= 0.20},
        "tables": tables,
        "tables_met": !tables.values().any(|t| t["grows"] == true),
        "polls": polls,
        "services_p99_ms_whole_run": percentile_ms(&all_services, 0.99),
        "canary_failures": canary,
        "canary_checks": end.canary.get("checks"),
        "evidence": {"whole": sum(|r| r.seen.evidence_whole), "incomplete": sum(|r| r.seen.evidence_incomplete),
                     "noise_gone": sum(|r| r.seen.noise_gone), "noise_left": sum(|r| r.seen.noise_left)},
        "server_errors": sum(|r| r.seen.server_errors),
        "transport_errors": sum(|r| r.seen.transport_errors),
        "refused": sum(|r| r.seen.refused),
        "acked": sum(|r| r.seen.acked),
        "ingest_per_s_mean": mean(&rows.iter().map(|r| r.ingest_per_s).collect::<Vec<_>>()),
        "cpu_cores_mean": mean(&rows.iter().map(|r| r.cpu_cores).collect::<Vec<_>>()),
        "analyses_consumed": sum(|r| r.seen.analyses_consumed),
        "malformed_tasks": sum(|r| r.seen.malformed_tasks),
        "partitions_dropped_for_age": end.dropped_age,
        "budget": budget,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_that_moves_by_a_page_both_ways_does_not_grow_and_one_that_steps_up_and_stays_does() {
        let page_both_ways = [33_587.2, 32_768.0, 34_406.4, 32_768.0, 33_587.2];
        assert!(trend_per_cycle(&page_both_ways).unwrap().abs() < 0.01);
        let stepped = [100.0, 100.0, 120.0, 120.0, 120.0];
        assert!(trend_per_cycle(&stepped).unwrap() > GROWTH_TOLERANCE);
        let steady_growth = [100.0, 106.0, 112.0, 118.0];
        assert!(trend_per_cycle(&steady_growth).unwrap() > GROWTH_TOLERANCE);
        let settling = [31.69, 32.17, 32.54, 32.73, 32.86];
        assert!(trend_per_cycle(&settling).unwrap() < GROWTH_TOLERANCE);
        assert_eq!(trend_per_cycle(&[5.0]), None);
    }
}
