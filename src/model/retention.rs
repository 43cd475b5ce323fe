//! How long signals are kept, and the time grid `raw_signals` is partitioned on. Plain values
//! and arithmetic: the store cuts and drops partitions by them, ingestion applies the same rule
//! to signals that arrive already expired.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::SignalType;

/// Retention per signal type; `None` keeps that type forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub traces: Option<Duration>,
    pub logs: Option<Duration>,
    pub metrics: Option<Duration>,
}

impl Retention {
    /// Keeps everything forever.
    pub const FOREVER: Retention = Retention { traces: None, logs: None, metrics: None };

    pub fn of(&self, signal_type: SignalType) -> Option<Duration> {
        match signal_type {
            SignalType::Trace => self.traces,
            SignalType::Log => self.logs,
            SignalType::Metric => self.metrics,
        }
    }

    /// The oldest time still kept for `signal_type` at `now`; `None` when it is kept forever.
    pub fn cutoff(&self, signal_type: SignalType, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        Some(super::time::before(now, self.of(signal_type)?))
    }

    /// Whether a signal of `signal_type` stamped `at` is already past its retention at `now`.
    /// Such a signal is acknowledged but not stored: it would be expired by the next pass.
    pub fn expired(&self, signal_type: SignalType, at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.cutoff(signal_type, now).is_some_and(|cutoff| at < cutoff)
    }

    /// The shortest finite retention, if any type has one.
    pub fn shortest(&self) -> Option<Duration> {
        [self.traces, self.logs, self.metrics].into_iter().flatten().min()
    }

    /// The longest finite retention, if any type has one.
    pub fn longest(&self) -> Option<Duration> {
        [self.traces, self.logs, self.metrics].into_iter().flatten().max()
    }
}

/// The length of one time partition, cut on a grid that starts at the Unix epoch (UTC): whole
/// minutes or hours dividing a day, or whole days. Every instance computes the same
/// boundaries. Minutes are for short retentions (a soak test that lives a month in an hour):
/// every partition is three tables, and the worker's read plans over all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInterval(Duration);

impl PartitionInterval {
    pub const ONE_DAY: PartitionInterval = PartitionInterval(Duration::from_secs(86_400));

    /// `None` unless `length` is whole minutes dividing a day, or whole days.
    pub fn new(length: Duration) -> Option<PartitionInterval> {
        let seconds = length.as_secs();
        let valid = length.subsec_nanos() == 0
            && seconds >= 60
            && seconds.is_multiple_of(60)
            && (seconds >= 86_400 && seconds.is_multiple_of(86_400) || 86_400 % seconds == 0);
        valid.then_some(PartitionInterval(length))
    }

    pub fn length(&self) -> Duration {
        self.0
    }

    fn seconds(&self) -> i64 {
        self.0.as_secs() as i64
    }

    /// The grid boundary at or before `at`.
    pub fn floor(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let step = self.seconds();
        let start = at.timestamp().div_euclid(step) * step;
        Utc.timestamp_opt(start, 0).single().unwrap_or(at)
    }

    /// The first grid boundary after `at`.
    pub fn next_boundary(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        self.floor(at) + chrono::Duration::seconds(self.seconds())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn intervals_are_whole_minutes_dividing_a_day_or_whole_days() {
        for hours in [1, 2, 3, 4, 6, 8, 12, 24, 48, 168] {
            assert!(PartitionInterval::new(Duration::from_secs(hours * 3600)).is_some(), "{hours}h");
        }
        for minutes in [1, 2, 5, 10, 15, 30, 90, 160] {
            assert!(PartitionInterval::new(Duration::from_secs(minutes * 60)).is_some(), "{minutes}m");
        }
        for seconds in [0, 30, 61, 7 * 60, 5 * 3600, 7 * 3600, 36 * 3600, 3600 + 1] {
            assert!(PartitionInterval::new(Duration::from_secs(seconds)).is_none(), "{seconds}s");
        }
    }

    #[test]
    fn the_grid_is_aligned_on_the_epoch_in_utc() {
        let day = PartitionInterval::ONE_DAY;
        assert_eq!(day.floor(utc("2026-12-01T17:30:00Z")), utc("2026-12-01T00:00:00Z"));
        assert_eq!(day.next_boundary(utc("2026-12-01T00:00:00Z")), utc("2026-12-02T00:00:00Z"));
        let six = PartitionInterval::new(Duration::from_secs(6 * 3600)).unwrap();
        assert_eq!(six.floor(utc("2026-12-01T17:30:00Z")), utc("2026-12-01T12:00:00Z"));
        assert_eq!(day.floor(utc("1969-12-31T23:00:00Z")), utc("1969-12-31T00:00:00Z"), "before the epoch");
    }

    #[test]
    fn a_signal_older_than_its_retention_is_expired_on_arrival() {
        let retention = Retention {
            traces: Some(Duration::from_secs(3600)),
            logs: None,
            metrics: Some(Duration::from_secs(7200)),
        };
        let now = utc("2026-12-01T12:00:00Z");
        assert!(retention.expired(SignalType::Trace, utc("2026-12-01T10:59:59Z"), now));
        assert!(!retention.expired(SignalType::Trace, utc("2026-12-01T11:00:00Z"), now));
        assert!(!retention.expired(SignalType::Log, utc("1990-01-01T00:00:00Z"), now), "kept forever");
        assert_eq!(retention.shortest(), Some(Duration::from_secs(3600)));
    }
}
