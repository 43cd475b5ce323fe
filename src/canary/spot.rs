//! Spot checks: a sample of earlier writes (one per `--spot-check-interval`) read again while
//! their retention runs, and once after it, to see that the service keeps what it should as
//! long as it should and no longer. A sample is only a write time (the write is planned again
//! from it), and there are at most `--spot-check-max` of them: the canary's memory stays
//! bounded however long it runs.

use std::collections::VecDeque;
use std::time::Duration;

use crate::model::{Retention, SignalType};

/// What a spot check expects of a signal of a given age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expectation {
    /// Within its retention: it must be there, intact.
    Present,
    /// Past its retention, within one partition interval and the grace: the service drops
    /// whole partitions, so either is right.
    Either,
    /// Well past: it must be gone.
    Absent,
}

/// The retention the canary was told, and how late the service may drop.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub retention: Retention,
    pub partition_interval: Duration,
    pub grace: Duration,
}

impl Lifetimes {
    pub fn expectation(&self, signal_type: SignalType, age: Duration) -> Expectation {
        match self.retention.of(signal_type) {
            None => Expectation::Present,
            Some(keep) if age < keep => Expectation::Present,
            Some(keep) if age <= keep + self.partition_interval + self.grace => Expectation::Either,
            Some(_) => Expectation::Absent,
        }
    }

    /// The age past which nothing of a write is expected any more (`None`: kept forever).
    fn end_of_interest(&self) -> Option<Duration> {
        let longest =
            SignalType::ALL.into_iter().map(|t| self.retention.of(t)).collect::<Option<Vec<_>>>()?;
        longest.into_iter().max().map(|keep| keep + self.partition_interval + self.grace)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    /// The write's time, Unix nanoseconds.
    at: u64,
    /// How many times it was checked.
    checks: u64,
}

/// The samples, oldest first.
#[derive(Debug)]
pub struct SpotChecks {
    samples: VecDeque<Sample>,
    max: usize,
    every: Duration,
    lifetimes: Lifetimes,
    /// Samples dropped to stay within `max`.
    pub evicted: u64,
}

/// A sample chosen for a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub at: u64,
    /// The last check this sample gets: after it, it is forgotten.
    pub last: bool,
}

impl SpotChecks {
    pub fn new(max: usize, every: Duration, lifetimes: Lifetimes) -> SpotChecks {
        SpotChecks { samples: VecDeque::new(), max: max.max(1), every, lifetimes, evicted: 0 }
    }

    /// How many writes are kept.
    pub fn samples(&self) -> usize {
        self.samples.len()
    }

    pub fn lifetimes(&self) -> Lifetimes {
        self.lifetimes
    }

    /// Offers a (healthy) write: kept when `every` has passed since the newest sample.
    pub fn offer(&mut self, at: u64) {
        let due = match self.samples.back() {
            None => true,
            Some(newest) => at.saturating_sub(newest.at) >= self.every.as_nanos() as u64,
        };
        if !due {
            return;
        }
        if self.samples.len() == self.max {
            self.samples.pop_front();
            self.evicted += 1;
        }
        self.samples.push_back(Sample { at, checks: 0 });
    }

    /// The sample to check at `now` (Unix nanoseconds): one past the end of its interest first
    /// (its last check), else the one checked least often, the oldest among them.
    pub fn next(&mut self, now: u64) -> Option<Due> {
        let end = self.lifetimes.end_of_interest().map(|d| d.as_nanos() as u64);
        let past_end = |s: &Sample| end.is_some_and(|end| now.saturating_sub(s.at) > end);
        let index = match self.samples.iter().position(past_end) {
            Some(i) => i,
            None => (0..self.samples.len()).min_by_key(|i| self.samples[*i].checks)?,
        };
        let last = past_end(&self.samples[index]);
        let sample = &mut self.samples[index];
        sample.checks += 1;
        let due = Due { at: sample.at, last };
        if last {
            self.samples.remove(index);
        }
        Some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn lifetimes(days: u64) -> Lifetimes {
        let keep = Some(Duration::from_secs(days * 86_400));
        Lifetimes {
            retention: Retention { traces: keep, logs: keep, metrics: keep },
            partition_interval: Duration::from_secs(86_400),
            grace: Duration::from_secs(3_600),
        }
    }

    #[test]
    fn memory_stays_bounded_however_many_writes_are_offered() {
        let mut spots = SpotChecks::new(100, Duration::from_secs(1), lifetimes(7));
        for i in 0..1_000_000u64 {
            spots.offer(i * SECOND);
        }
        assert_eq!(spots.samples(), 100);
        assert_eq!(spots.evicted, 999_900);
        assert_eq!(spots.next(1_000_000 * SECOND).map(|d| d.at), Some(999_900 * SECOND), "the oldest kept");
    }

    #[test]
    fn one_write_per_interval_is_kept() {
        let mut spots = SpotChecks::new(100, Duration::from_secs(60), lifetimes(7));
        for second in 0..600u64 {
            spots.offer(second * SECOND);
        }
        assert_eq!(spots.samples(), 10);
    }

    #[test]
    fn expectations_follow_retention_partition_interval_and_grace() {
        let l = lifetimes(7);
        let day = |d: u64| Duration::from_secs(d * 86_400);
        assert_eq!(l.expectation(SignalType::Log, day(6)), Expectation::Present);
        assert_eq!(l.expectation(SignalType::Log, day(7)), Expectation::Either);
        assert_eq!(l.expectation(SignalType::Log, day(8)), Expectation::Either);
        assert_eq!(l.expectation(SignalType::Log, day(8) + Duration::from_secs(3_601)), Expectation::Absent);
        let forever = Lifetimes { retention: Retention { traces: None, logs: None, metrics: None }, ..l };
        assert_eq!(forever.expectation(SignalType::Trace, day(10_000)), Expectation::Present);
    }

    #[test]
    fn samples_are_checked_in_turn_and_get_one_last_check_after_their_retention() {
        let mut spots = SpotChecks::new(10, Duration::from_secs(1), lifetimes(1));
        spots.offer(0);
        spots.offer(10 * SECOND);
        let now = 100 * SECOND;
        assert_eq!(spots.next(now), Some(Due { at: 0, last: false }));
        assert_eq!(spots.next(now), Some(Due { at: 10 * SECOND, last: false }));
        assert_eq!(spots.next(now), Some(Due { at: 0, last: false }));
        let later = (2 * 86_400 + 3_600 + 20) * SECOND;
        assert_eq!(spots.next(later), Some(Due { at: 0, last: true }));
        assert_eq!(spots.next(later), Some(Due { at: 10 * SECOND, last: true }));
        assert!(spots.samples() == 0 && spots.next(later).is_none());
    }
}
