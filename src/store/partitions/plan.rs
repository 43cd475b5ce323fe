//! Which partitions to create and which to drop, decided from the recorded ones, the settings
//! and a time. Pure, so that every rule is tested without a database or a clock.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::model::{Lifecycle, PartitionInterval, SignalType};

/// How many intervals ahead of now partitions exist, so that a signal stamped a little in the
/// future (clock skew) lands in a partition of its own and a pass that runs late is harmless.
const INTERVALS_AHEAD: i32 = 2;

/// A range partition of `raw_signals` as recorded in `raw_signal_partitions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePartition {
    pub name: String,
    /// `None`: from the beginning of time (the table from before partitioning).
    pub starts: Option<DateTime<Utc>>,
    pub ends: DateTime<Utc>,
    /// The table from before partitioning: one table holding every signal type.
    pub legacy: bool,
    /// One table holding every signal type, without a partition per type: the legacy table, or
    /// a range on a Citus cluster holding it (which distributes no table partitioned twice).
    pub mixed: bool,
    /// Only recorded: its type partitions hang from `raw_signal_rows` itself, keyed by type and
    /// time (on a Citus cluster).
    pub keyed: bool,
    /// The signal types whose partition still exists under it (every type, for the legacy one).
    pub types: Vec<SignalType>,
}

impl RangePartition {
    fn contains(&self, at: DateTime<Utc>) -> bool {
        self.starts.is_none_or(|starts| starts <= at) && at < self.ends
    }
}

/// A time range to create a partition for: `[starts, ends)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewRange {
    pub starts: DateTime<Utc>,
    pub ends: DateTime<Utc>,
}

impl NewRange {
    /// `raw_signals_p20261201`, or `raw_signals_p20261201t0600` when it does not start at
    /// midnight. Unique, since ranges never overlap.
    pub fn name(&self) -> String {
        self.name_under("raw_signals")
    }

    /// The name of this range's partition of `table`, as [`NewRange::name`] for `raw_signals`.
    pub fn name_under(&self, table: &str) -> String {
        let format = match self.starts.format("%H%M%S").to_string().as_str() {
            "000000" => "%Y%m%d",
            time if time.ends_with("0000") => "%Y%m%dt%H",
            _ => "%Y%m%dt%H%M%S",
        };
        format!("{table}_p{}", self.starts.format(format))
    }
}

/// The name of the partition holding `signal_type` under the range partition `partition`.
pub fn leaf_name(partition: &str, signal_type: SignalType) -> String {
    format!("{partition}_{}", signal_type.as_str())
}

/// The ranges missing between the start of the interval holding `now` and `INTERVALS_AHEAD`
/// intervals later. A range already covered (by any partition, the legacy one included) is
/// skipped; a new range ends at the next grid boundary or where the next partition starts, so
/// a changed `PARTITION_INTERVAL` never overlaps what exists. Gaps before now are left alone:
/// what falls in them goes to the default partition.
pub fn ranges_to_create(
    existing: &[RangePartition],
    interval: PartitionInterval,
    now: DateTime<Utc>,
) -> Vec<NewRange> {
    let step = chrono::Duration::from_std(interval.length()).unwrap_or(chrono::Duration::days(1));
    let horizon = now + step * INTERVALS_AHEAD;
    let mut cursor = interval.floor(now);
    let mut missing = Vec::new();
    while cursor < horizon {
        if let Some(covering) = existing.iter().find(|p| p.contains(cursor)) {
            cursor = covering.ends;
            continue;
        }
        let next_existing = existing.iter().filter_map(|p| p.starts).filter(|s| *s > cursor).min();
        let ends =
            next_existing.map_or(interval.next_boundary(cursor), |s| s.min(interval.next_boundary(cursor)));
        missing.push(NewRange { starts: cursor, ends });
        cursor = ends;
    }
    missing
}

/// Where an expiring partition sits, to put its evidence in its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bounds {
    /// A signal type's partition, under the range partition `parent`.
    Type { parent: String, signal_type: SignalType },
    /// The table from before partitioning: every type, stamped before its cut-over.
    Before(DateTime<Utc>),
    /// A range holding every type (on a Citus cluster): `[starts, ends)`.
    Mixed { starts: DateTime<Utc>, ends: DateTime<Utc> },
    /// A signal type's partition of the range `range`, `[starts, ends)`, under `raw_signal_rows`
    /// keyed by type and time (on a Citus cluster).
    Keyed { range: String, signal_type: SignalType, starts: DateTime<Utc>, ends: DateTime<Utc> },
}

impl Bounds {
    /// The one type the partition holds; `None`: every type.
    pub fn signal_type(&self) -> Option<SignalType> {
        match self {
            Bounds::Type { signal_type, .. } | Bounds::Keyed { signal_type, .. } => Some(*signal_type),
            Bounds::Before(_) | Bounds::Mixed { .. } => None,
        }
    }
}

/// What the lifecycle asks of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expired {
    /// A type's partition (or the legacy table) past its retention, or taken by the size
    /// budget: replaced by a table of the same name and bounds holding only its evidence
    /// (perhaps none). A range never loses the partition of a type: a late signal stamped in it
    /// is stored there, never refused for want of a partition.
    Noise { table: String, bounds: Bounds },
    /// A range partition (or the legacy table) whose partitions all hold only evidence and are
    /// past their type's retention: dropped whole once none of it is evidence any more.
    Evidence { table: String },
    /// A range partition (or the legacy table) whose partitions all hold only evidence,
    /// dropped whole, evidence and all: the size budget's last resort.
    Everything { table: String },
}

impl Expired {
    /// The table it changes: a partition, or a whole range (perhaps only recorded).
    pub fn table(&self) -> &str {
        match self {
            Expired::Noise { table, .. } | Expired::Evidence { table } | Expired::Everything { table } => {
                table
            }
        }
    }

    /// The range (or the legacy table) it belongs to.
    pub fn range(&self) -> &str {
        match self {
            Expired::Noise {
                bounds: Bounds::Type { parent: range, .. } | Bounds::Keyed { range, .. },
                ..
            } => range,
            Expired::Noise { table, .. } | Expired::Evidence { table } | Expired::Everything { table } => {
                table
            }
        }
    }
}

/// The partitions of a range (the legacy table: itself), with their bounds.
fn tables(partition: &RangePartition) -> Vec<(String, Bounds)> {
    if partition.legacy {
        return vec![(partition.name.clone(), Bounds::Before(partition.ends))];
    }
    if let (true, Some(starts)) = (partition.mixed, partition.starts) {
        return vec![(partition.name.clone(), Bounds::Mixed { starts, ends: partition.ends })];
    }
    let leaf = |t: SignalType| {
        let bounds = match (partition.keyed, partition.starts) {
            (true, Some(starts)) => {
                Bounds::Keyed { range: partition.name.clone(), signal_type: t, starts, ends: partition.ends }
            }
            _ => Bounds::Type { parent: partition.name.clone(), signal_type: t },
        };
        (leaf_name(&partition.name, t), bounds)
    };
    partition.types.iter().map(|t| leaf(*t)).collect()
}

fn types_of(bounds: &Bounds) -> Vec<SignalType> {
    bounds.signal_type().map_or_else(|| SignalType::ALL.to_vec(), |t| vec![t])
}

/// What expires at `now` ([`Lifecycle::partition_expired`]): a type's partition once its whole
/// range is older than the type's retention; the legacy table, which holds every type mixed,
/// once every type's retention has passed its end; a range once all its partitions hold only
/// evidence past their retention. `evidence_only` names the partitions already replaced.
pub fn expired(
    partitions: &[RangePartition],
    evidence_only: &HashSet<String>,
    lifecycle: &Lifecycle,
    now: DateTime<Utc>,
) -> Vec<Expired> {
    let past = |bounds: &Bounds, ends: DateTime<Utc>| {
        types_of(bounds).into_iter().all(|t| lifecycle.partition_expired(t, ends, now))
    };
    let mut expired = Vec::new();
    for partition in partitions {
        let tables = tables(partition);
        let noise: Vec<Expired> = tables
            .iter()
            .filter(|(table, bounds)| !evidence_only.contains(table) && past(bounds, partition.ends))
            .map(|(table, bounds)| Expired::Noise { table: table.clone(), bounds: bounds.clone() })
            .collect();
        let done = tables
            .iter()
            .all(|(table, bounds)| evidence_only.contains(table) && past(bounds, partition.ends));
        if done {
            expired.push(Expired::Evidence { table: partition.name.clone() });
        } else {
            expired.extend(noise);
        }
    }
    expired
}

/// What the size budget may take, in its order: type partitions oldest first, their healthy
/// traffic before any evidence (each keeps its evidence), then whole ranges holding only
/// evidence, oldest first. Never a range that has not ended at `now`: the partition being
/// written, the next one, and those made ahead.
pub fn size_drops(
    partitions: &[RangePartition],
    evidence_only: &HashSet<String>,
    now: DateTime<Utc>,
) -> Vec<Expired> {
    let mut ended: Vec<&RangePartition> = partitions.iter().filter(|p| p.ends <= now).collect();
    ended.sort_by_key(|p| (p.starts, p.ends));
    let noise = ended
        .iter()
        .flat_map(|p| tables(p))
        .filter(|(table, _)| !evidence_only.contains(table))
        .map(|(table, bounds)| Expired::Noise { table, bounds });
    // A range whose partitions the noise pass above replaces holds only evidence after it.
    let everything = ended.iter().map(|p| Expired::Everything { table: p.name.clone() });
    noise.chain(everything).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::model::Retention;

    /// The policy with these signal retentions.
    fn keeping(signals: Retention) -> Lifecycle {
        Lifecycle {
            signals,
            partition_interval: PartitionInterval::ONE_DAY,
            incidents: None,
            outbox: None,
            max_database_bytes: None,
            seal_after: None,
        }
    }

    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn day(starts: &str, types: &[SignalType]) -> RangePartition {
        let starts = utc(starts);
        let range = NewRange { starts, ends: starts + chrono::Duration::days(1) };
        RangePartition {
            name: range.name(),
            starts: Some(starts),
            ends: range.ends,
            legacy: false,
            mixed: false,
            keyed: false,
            types: types.to_vec(),
        }
    }

    fn legacy_until(ends: &str) -> RangePartition {
        RangePartition {
            name: "raw_signals_legacy".into(),
            starts: None,
            ends: utc(ends),
            legacy: true,
            mixed: true,
            keyed: false,
            types: SignalType::ALL.to_vec(),
        }
    }

    fn created(
        partitions: &[RangePartition],
        interval: PartitionInterval,
        now: &str,
    ) -> Vec<(String, String)> {
        ranges_to_create(partitions, interval, utc(now))
            .iter()
            .map(|r| (r.name(), r.ends.to_rfc3339()))
            .collect()
    }

    #[test]
    fn an_empty_database_gets_the_current_interval_and_two_ahead() {
        let made = created(&[], PartitionInterval::ONE_DAY, "2026-12-01T17:00:00Z");
        assert_eq!(
            made,
            [
                ("raw_signals_p20261201".to_owned(), "2026-12-02T00:00:00+00:00".to_owned()),
                ("raw_signals_p20261202".to_owned(), "2026-12-03T00:00:00+00:00".to_owned()),
                ("raw_signals_p20261203".to_owned(), "2026-12-04T00:00:00+00:00".to_owned()),
            ]
        );
    }

    #[test]
    fn existing_ranges_are_skipped_and_a_pass_the_next_day_adds_one() {
        let all = SignalType::ALL;
        let have = [
            day("2026-12-01T00:00:00Z", &all),
            day("2026-12-02T00:00:00Z", &all),
            day("2026-12-03T00:00:00Z", &all),
        ];
        assert!(created(&have, PartitionInterval::ONE_DAY, "2026-12-01T23:59:59Z").is_empty());
        let next = created(&have, PartitionInterval::ONE_DAY, "2026-12-02T00:00:01Z");
        assert_eq!(next, [("raw_signals_p20261204".to_owned(), "2026-12-05T00:00:00+00:00".to_owned())]);
    }

    #[test]
    fn the_legacy_table_is_continued_from_its_cut_over() {
        let legacy = legacy_until("2026-12-01T10:00:00Z");
        let made = created(&[legacy], PartitionInterval::ONE_DAY, "2026-12-01T09:30:00Z");
        assert_eq!(made[0], ("raw_signals_p20261201t10".to_owned(), "2026-12-02T00:00:00+00:00".to_owned()));
        assert_eq!(made.len(), 3);
    }

    #[test]
    fn a_shorter_interval_fills_up_to_the_existing_partitions_without_overlap() {
        let six = PartitionInterval::new(Duration::from_secs(6 * 3600)).unwrap();
        let have = [day("2026-12-02T00:00:00Z", &SignalType::ALL)];
        let made = ranges_to_create(&have, six, utc("2026-12-01T19:00:00Z"));
        let bounds: Vec<(String, String)> =
            made.iter().map(|r| (r.starts.to_rfc3339(), r.ends.to_rfc3339())).collect();
        // Up to the next day, which exists and reaches past the horizon.
        assert_eq!(
            bounds,
            [("2026-12-01T18:00:00+00:00".to_owned(), "2026-12-02T00:00:00+00:00".to_owned())]
        );
        assert_eq!(made[0].name(), "raw_signals_p20261201t18");
    }

    fn none() -> HashSet<String> {
        HashSet::new()
    }

    fn noise(partition: &RangePartition, signal_type: SignalType) -> Expired {
        let bounds = Bounds::Type { parent: partition.name.clone(), signal_type };
        Expired::Noise { table: leaf_name(&partition.name, signal_type), bounds }
    }

    #[test]
    fn each_type_expires_on_its_own() {
        let days = |n: u64| Some(Duration::from_secs(n * 86_400));
        let retention = Retention { traces: days(7), logs: days(7), metrics: days(30) };
        let old = day("2026-11-01T00:00:00Z", &SignalType::ALL);
        let now = utc("2026-11-10T00:00:00Z");
        let mut drops = expired(std::slice::from_ref(&old), &none(), &keeping(retention), now);
        drops.sort_by_key(|d| format!("{d:?}"));
        assert_eq!(drops, [noise(&old, SignalType::Log), noise(&old, SignalType::Trace)]);
        let later = utc("2026-12-02T00:00:00Z");
        assert_eq!(
            expired(std::slice::from_ref(&old), &none(), &keeping(retention), later).len(),
            3,
            "the metric partition too, a month on"
        );
    }

    #[test]
    fn a_range_goes_whole_once_all_its_partitions_hold_only_evidence_past_their_retention() {
        let retention = Retention { traces: Some(Duration::from_secs(86_400)), ..Retention::FOREVER };
        let old = day("2026-11-01T00:00:00Z", &[SignalType::Trace, SignalType::Log]);
        let trace_kept: HashSet<String> = [leaf_name(&old.name, SignalType::Trace)].into();
        let now = utc("2026-11-05T00:00:00Z");
        assert!(
            expired(std::slice::from_ref(&old), &trace_kept, &keeping(retention), now).is_empty(),
            "logs are kept forever; the trace partition already holds only evidence"
        );
        let all_kept: HashSet<String> =
            [leaf_name(&old.name, SignalType::Trace), leaf_name(&old.name, SignalType::Log)].into();
        let everything = Retention { logs: Some(Duration::from_secs(86_400)), ..retention };
        assert_eq!(
            expired(std::slice::from_ref(&old), &all_kept, &keeping(everything), now),
            [Expired::Evidence { table: old.name.clone() }]
        );
    }

    #[test]
    fn a_partition_expires_only_once_its_end_is_past_the_retention() {
        let retention = Retention { traces: Some(Duration::from_secs(86_400)), ..Retention::FOREVER };
        let partition = day("2026-12-01T00:00:00Z", &[SignalType::Trace]);
        let at =
            |now: &str| expired(std::slice::from_ref(&partition), &none(), &keeping(retention), utc(now));
        assert!(at("2026-12-02T23:59:59Z").is_empty());
        assert_eq!(at("2026-12-03T00:00:00Z"), [noise(&partition, SignalType::Trace)]);
        assert!(
            expired(
                std::slice::from_ref(&partition),
                &none(),
                &keeping(Retention::FOREVER),
                utc("2099-01-01T00:00:00Z")
            )
            .is_empty(),
            "0: forever"
        );
    }

    #[test]
    fn on_citus_a_range_keyed_by_type_expires_type_by_type_then_whole() {
        let mut old = day("2026-11-01T00:00:00Z", &SignalType::ALL);
        old.keyed = true;
        let days = |n: u64| Some(Duration::from_secs(n * 86_400));
        let retention = Retention { traces: days(7), logs: days(1), metrics: days(30) };
        let now = utc("2026-11-04T00:00:00Z");
        assert_eq!(
            expired(std::slice::from_ref(&old), &none(), &keeping(retention), now),
            [Expired::Noise {
                table: leaf_name(&old.name, SignalType::Log),
                bounds: Bounds::Keyed {
                    range: old.name.clone(),
                    signal_type: SignalType::Log,
                    starts: utc("2026-11-01T00:00:00Z"),
                    ends: utc("2026-11-02T00:00:00Z"),
                },
            }],
            "only the logs, their partition in the range's place under raw_signal_rows"
        );
        let all_kept: HashSet<String> = SignalType::ALL.iter().map(|t| leaf_name(&old.name, *t)).collect();
        let later = utc("2026-12-05T00:00:00Z");
        let whole = expired(std::slice::from_ref(&old), &all_kept, &keeping(retention), later);
        assert_eq!(whole, [Expired::Evidence { table: old.name.clone() }]);
        assert_eq!(whole[0].range(), old.name);
    }

    #[test]
    fn the_legacy_table_expires_when_every_type_has() {
        let legacy = legacy_until("2026-12-01T10:00:00Z");
        let days = |n: u64| Some(Duration::from_secs(n * 86_400));
        let retention = Retention { traces: days(7), logs: days(7), metrics: days(30) };
        let legacy_only = std::slice::from_ref(&legacy);
        assert!(
            expired(legacy_only, &none(), &keeping(retention), utc("2026-12-20T00:00:00Z")).is_empty(),
            "metrics still kept"
        );
        assert_eq!(
            expired(legacy_only, &none(), &keeping(retention), utc("2027-01-01T00:00:00Z")),
            [Expired::Noise { table: legacy.name.clone(), bounds: Bounds::Before(legacy.ends) }]
        );
        let kept: HashSet<String> = [legacy.name.clone()].into();
        assert_eq!(
            expired(legacy_only, &kept, &keeping(retention), utc("2027-01-01T00:00:00Z")),
            [Expired::Evidence { table: legacy.name.clone() }]
        );
        let forever_logs = Retention { logs: None, ..retention };
        assert!(expired(legacy_only, &none(), &keeping(forever_logs), utc("2099-01-01T00:00:00Z")).is_empty());
    }

    #[test]
    fn the_size_budget_takes_oldest_noise_first_then_whole_ranges_and_never_the_current_one() {
        let all = SignalType::ALL;
        let (old, older, today) = (
            day("2026-11-02T00:00:00Z", &all),
            day("2026-11-01T00:00:00Z", &all),
            day("2026-11-03T00:00:00Z", &all),
        );
        let kept: HashSet<String> = [leaf_name(&older.name, SignalType::Log)].into();
        let plan = size_drops(&[old.clone(), today, older.clone()], &kept, utc("2026-11-03T12:00:00Z"));
        let names: Vec<String> = plan
            .iter()
            .map(|e| match e {
                Expired::Noise { table, .. } => format!("noise {table}"),
                Expired::Everything { table } => format!("all {table}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            names,
            [
                "noise raw_signals_p20261101_trace",
                "noise raw_signals_p20261101_metric",
                "noise raw_signals_p20261102_log",
                "noise raw_signals_p20261102_trace",
                "noise raw_signals_p20261102_metric",
                "all raw_signals_p20261101",
                "all raw_signals_p20261102",
            ]
        );
    }
}
