//! When each thing we store expires, and why: one policy, asked by ingest (a signal already
//! expired on arrival), the batch write (when an incident's signals will all have gone), the
//! maintenance pass (which partitions expire, which incidents, problems and outbox rows go) and
//! the API. Nothing else restates these rules.
//!
//! - **Signals** are noise or evidence. Noise lives its type's retention (`RETENTION_TRACES`,
//!   `_LOGS`, `_METRICS`): a type's partition expires once its whole range is older than that,
//!   so a signal lives between its retention and its retention plus one partition interval.
//!   Evidence (the signals of a trace whose incident was analysed, or that represents a
//!   problem) is kept, its trace whole, as long as that incident or problem is kept: when its
//!   partition expires, the evidence is kept in a small partition of the same range.
//! - **Incidents** nobody analysed go once every signal they counted has gone; any incident
//!   (with its analyses and links) and any problem after `INCIDENT_RETENTION` without a signal,
//!   and its evidence with it. Incidents live in time ranges (one per partition interval, by
//!   when they were detected): a range is emptied at once when most of its incidents have
//!   expired by those rules ([`Lifecycle::incident_range_sort`]: from the shortest retention
//!   if at most a tenth of them would stay, from the longest in any case), the few that have
//!   not moving to the table of kept incidents, where they go one by one. So an unanalysed
//!   incident lives until its range is emptied, at most one partition interval plus the
//!   longest signal retention after it was detected, or `INCIDENT_RETENTION` when that is
//!   shorter.
//! - **Delivered outbox rows** go after `OUTBOX_RETENTION`; pending ones never.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::retention::{PartitionInterval, Retention};
use super::time::before;
use super::SignalType;

/// Every retention setting, and the rules that follow from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// Per signal type; `None` keeps that type forever.
    pub signals: Retention,
    /// The time grid of `raw_signals`' partitions.
    pub partition_interval: PartitionInterval,
    /// Analysed incidents, their problems, analyses and evidence; `None`: forever.
    pub incidents: Option<Duration>,
    /// Delivered outbox rows; `None`: forever.
    pub outbox: Option<Duration>,
    /// `RETENTION_MAX_DATABASE_SIZE`: above it, partitions go oldest first, whatever their age
    /// (healthy traffic before evidence, never the one being written or the next); `None`: no
    /// budget.
    pub max_database_bytes: Option<u64>,
    /// `SEAL_AFTER`: a type's partition is rewritten into compressed blocks once its range
    /// ended this long ago and nothing arrived in it for as long; `None`: never.
    pub seal_after: Option<Duration>,
}

/// Whether a range of incidents is sorted: [`Lifecycle::incident_range_sort`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSort {
    NotYet,
    /// If [`sort_early`] says so of its incidents; otherwise it waits for [`RangeSort::Now`].
    IfFewKept,
    Now,
}

/// At most this share of a range's incidents move to `incidents_kept` when it is sorted before
/// the longest retention has run out: the kept incidents expire one by one, the cost the
/// ranges exist to avoid, so an early sort must leave nearly all of them to the drop.
pub const EARLY_SORT_MAX_KEPT_SHARE: f64 = 0.1;

/// Whether a range due [`RangeSort::IfFewKept`], of which `kept` of `total` incidents have not
/// expired, is sorted now.
pub fn sort_early(kept: u64, total: u64) -> bool {
    kept as f64 <= total as f64 * EARLY_SORT_MAX_KEPT_SHARE
}

/// Cut-off times of the row expiry at one moment: a row older than its cut-off goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowCutoffs {
    /// Incidents nobody analysed detected before this may have outlived their signals (none
    /// can before the shortest retention has passed); `None`: signals are kept forever.
    pub unanalysed_detected_before: Option<DateTime<Utc>>,
    /// Analysed incidents (and problems) without a signal since this go; `None`: forever.
    pub inactive_since: Option<DateTime<Utc>>,
    /// Delivered outbox rows sent before this go; `None`: forever.
    pub outbox_sent_before: Option<DateTime<Utc>>,
}

impl Lifecycle {
    /// A signal stamped `at` is already past its type's retention at `now`: it would be
    /// dropped by the next pass, so it is acknowledged and not stored.
    pub fn expired_on_arrival(&self, signal_type: SignalType, at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.signals.expired(signal_type, at, now)
    }

    /// When a signal stamped `at` will have gone as noise: its partition ends within one
    /// interval of it, and goes once that end is past the retention. `None`: kept forever.
    pub fn noise_gone_by(&self, signal_type: SignalType, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let keep = self.signals.of(signal_type)? + self.partition_interval.length();
        Some(at + chrono::Duration::from_std(keep).ok()?)
    }

    /// Whether the `signal_type` partition of a range ending at `ends` has expired as noise at
    /// `now` (its evidence, if any, is kept).
    pub fn partition_expired(
        &self,
        signal_type: SignalType,
        ends: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> bool {
        self.signals.cutoff(signal_type, now).is_some_and(|cutoff| ends <= cutoff)
    }

    /// Per type, the oldest time still kept as noise at `now` (`None`: forever), in
    /// `SignalType::ALL` order.
    pub fn noise_cutoffs(&self, now: DateTime<Utc>) -> [Option<DateTime<Utc>>; 3] {
        SignalType::ALL.map(|t| self.signals.cutoff(t, now))
    }

    /// When the incidents detected in a range ending at `ends` are sorted at `now` (the
    /// expired ones dropped with the range, the others kept).
    ///
    /// [`RangeSort::Now`] once every incident nobody analysed whose signals all have a finite
    /// retention has outlived them (a signal's partition ends at most one interval after the
    /// incident's range: the longest retention plus an interval), or every incident has been
    /// inactive for `INCIDENT_RETENTION`, whichever comes first. Never when neither retention
    /// is finite.
    ///
    /// [`RangeSort::IfFewKept`] from the shortest retention plus an interval: the incidents
    /// whose signals are all of the shortest-lived types have outlived them by then, and when
    /// those are nearly all of the range ([`sort_early`]), waiting for the longest retention
    /// would only hold the rest of them on disk (measured in the soak: 99.9 % of the incidents
    /// counted only traces and logs, kept 7 minutes instead of 4 for the 0.1 % with metrics).
    pub fn incident_range_sort(&self, ends: DateTime<Utc>, now: DateTime<Utc>) -> RangeSort {
        let interval = self.partition_interval.length();
        let capped = |signals: Option<Duration>| {
            let signals = signals.map(|retention| retention + interval);
            match (signals, self.incidents) {
                (Some(signals), Some(incidents)) => Some(signals.min(incidents)),
                (signals, incidents) => signals.or(incidents),
            }
        };
        let passed = |wait: Option<Duration>| {
            wait.and_then(|wait| chrono::Duration::from_std(wait).ok()).is_some_and(|wait| ends + wait <= now)
        };
        if passed(capped(self.signals.longest())) {
            RangeSort::Now
        } else if passed(capped(self.signals.shortest())) {
            RangeSort::IfFewKept
        } else {
            RangeSort::NotYet
        }
    }

    /// Whether a type's partition of a range ending at `ends` is sealed at `now`: once its range
    /// ended `SEAL_AFTER` ago, and, for one sealed before (it holds late arrivals), once the
    /// newest of them (`last_arrival`) arrived as long ago. A partition still receiving late
    /// signals is sealed when they stop, not each time one comes.
    pub fn seal_due(
        &self,
        ends: DateTime<Utc>,
        last_arrival: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(wait) = self.seal_after.and_then(|wait| chrono::Duration::from_std(wait).ok()) else {
            return false;
        };
        ends + wait <= now && last_arrival.is_none_or(|last| last + wait <= now)
    }

    /// The row expiry's cut-offs at `now`.
    pub fn row_cutoffs(&self, now: DateTime<Utc>) -> RowCutoffs {
        RowCutoffs {
            unanalysed_detected_before: self.signals.shortest().map(|shortest| before(now, shortest)),
            inactive_since: self.incidents.map(|keep| before(now, keep)),
            outbox_sent_before: self.outbox.map(|keep| before(now, keep)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    const DAY: Duration = Duration::from_secs(86_400);

    fn lifecycle() -> Lifecycle {
        Lifecycle {
            signals: Retention { traces: Some(7 * DAY), logs: Some(DAY), metrics: None },
            partition_interval: PartitionInterval::ONE_DAY,
            incidents: Some(90 * DAY),
            outbox: Some(7 * DAY),
            max_database_bytes: None,
            seal_after: Some(Duration::from_secs(3_600)),
        }
    }

    #[test]
    fn a_partition_is_sealed_once_its_range_and_its_late_arrivals_are_an_hour_old() {
        let l = lifecycle();
        let ends = utc("2026-12-02T00:00:00Z");
        assert!(!l.seal_due(ends, None, utc("2026-12-02T00:59:59Z")));
        assert!(l.seal_due(ends, None, utc("2026-12-02T01:00:00Z")));
        let late = Some(utc("2026-12-03T10:00:00Z"));
        assert!(!l.seal_due(ends, late, utc("2026-12-03T10:30:00Z")), "late arrivals still coming");
        assert!(l.seal_due(ends, late, utc("2026-12-03T11:00:00Z")));
        let off = Lifecycle { seal_after: None, ..l };
        assert!(!off.seal_due(ends, None, utc("2027-01-01T00:00:00Z")), "SEAL_AFTER=0 never seals");
    }

    #[test]
    fn noise_lives_between_its_retention_and_one_partition_more() {
        let l = lifecycle();
        let at = utc("2026-12-01T10:00:00Z");
        assert_eq!(l.noise_gone_by(SignalType::Log, at), Some(utc("2026-12-03T10:00:00Z")));
        assert_eq!(l.noise_gone_by(SignalType::Metric, at), None, "kept forever");
        let ends = utc("2026-12-02T00:00:00Z");
        assert!(!l.partition_expired(SignalType::Log, ends, utc("2026-12-02T23:59:59Z")));
        assert!(l.partition_expired(SignalType::Log, ends, utc("2026-12-03T00:00:00Z")));
        assert!(!l.partition_expired(SignalType::Metric, ends, utc("2099-01-01T00:00:00Z")));
        assert!(l.expired_on_arrival(SignalType::Log, utc("2026-11-30T09:00:00Z"), at));
        assert!(!l.expired_on_arrival(SignalType::Trace, utc("2026-11-30T09:00:00Z"), at));
    }

    #[test]
    fn an_incident_range_is_sorted_once_its_signals_or_its_inactivity_have_run_out() {
        let ends = utc("2026-12-02T00:00:00Z");
        // Traces 7 days, logs 1, metrics forever: from the shortest finite retention plus an
        // interval if few incidents stay, from the longest plus an interval in any case.
        let l = lifecycle();
        assert_eq!(l.incident_range_sort(ends, utc("2026-12-03T23:59:59Z")), RangeSort::NotYet);
        assert_eq!(l.incident_range_sort(ends, utc("2026-12-04T00:00:00Z")), RangeSort::IfFewKept);
        assert_eq!(l.incident_range_sort(ends, utc("2026-12-09T23:59:59Z")), RangeSort::IfFewKept);
        assert_eq!(l.incident_range_sort(ends, utc("2026-12-10T00:00:00Z")), RangeSort::Now);
        // INCIDENT_RETENTION shorter than both: it decides.
        let short = Lifecycle { incidents: Some(DAY), ..lifecycle() };
        assert_eq!(short.incident_range_sort(ends, utc("2026-12-02T23:59:59Z")), RangeSort::NotYet);
        assert_eq!(short.incident_range_sort(ends, utc("2026-12-03T00:00:00Z")), RangeSort::Now);
        // Signals kept forever: INCIDENT_RETENTION alone; nothing finite: never.
        let signals_forever = Lifecycle { signals: Retention::FOREVER, ..lifecycle() };
        assert_eq!(signals_forever.incident_range_sort(ends, utc("2027-03-02T00:00:00Z")), RangeSort::Now);
        assert_eq!(signals_forever.incident_range_sort(ends, utc("2027-03-01T23:59:59Z")), RangeSort::NotYet);
        let forever = Lifecycle { incidents: None, ..signals_forever };
        assert_eq!(forever.incident_range_sort(ends, utc("2099-01-01T00:00:00Z")), RangeSort::NotYet);
    }

    #[test]
    fn an_early_sort_keeps_at_most_a_tenth_of_the_range() {
        assert!(sort_early(0, 0));
        assert!(sort_early(10, 100));
        assert!(!sort_early(11, 100));
        assert!(!sort_early(1, 0));
    }

    #[test]
    fn row_cutoffs_follow_the_shortest_retention_and_the_incident_and_outbox_ones() {
        let now = utc("2026-12-31T00:00:00Z");
        let cutoffs = lifecycle().row_cutoffs(now);
        assert_eq!(cutoffs.unanalysed_detected_before, Some(utc("2026-12-30T00:00:00Z")));
        assert_eq!(cutoffs.inactive_since, Some(utc("2026-10-02T00:00:00Z")));
        assert_eq!(cutoffs.outbox_sent_before, Some(utc("2026-12-24T00:00:00Z")));
        let forever = Lifecycle { incidents: None, outbox: None, signals: Retention::FOREVER, ..lifecycle() };
        assert_eq!(
            forever.row_cutoffs(now),
            RowCutoffs { unanalysed_detected_before: None, inactive_since: None, outbox_sent_before: None }
        );
    }
}
