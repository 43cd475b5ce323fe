//! How fast the database has been absorbing signals, learnt from the batches just written.
//! Admission and batch sizes follow it, so that under overload the excess is refused at the
//! door instead of being accepted and then timing out in the queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Batches smaller than this say more about the database's round-trip than its throughput.
const MIN_SAMPLE_SIGNALS: usize = 100;
/// The batch size while the rate is unknown: just above what teaches it.
const LEARNING_BATCH_SIGNALS: usize = 2 * MIN_SAMPLE_SIGNALS;
/// Weight of the newest batch in the moving average.
const NEW_WEIGHT: f64 = 0.3;

/// Signals per second one writer commits, as an exponential moving average; unknown (0) until
/// a batch of meaningful size was written.
#[derive(Debug, Default)]
pub(super) struct DrainRate {
    per_writer_bits: AtomicU64,
}

impl DrainRate {
    /// Learns from one committed batch of `signals` that took `took` to write.
    pub fn record(&self, signals: usize, took: Duration) {
        if signals < MIN_SAMPLE_SIGNALS {
            return;
        }
        let sample = signals as f64 / took.as_secs_f64().max(1e-6);
        let _ = self.per_writer_bits.fetch_update(Ordering::AcqRel, Ordering::Acquire, |bits| {
            let old = f64::from_bits(bits);
            let new = if old > 0.0 { old * (1.0 - NEW_WEIGHT) + sample * NEW_WEIGHT } else { sample };
            Some(new.to_bits())
        });
    }

    /// Signals per second per writer, once known.
    pub fn per_writer(&self) -> Option<f64> {
        let rate = f64::from_bits(self.per_writer_bits.load(Ordering::Acquire));
        (rate > 0.0).then_some(rate)
    }
}

/// Whether a request of `own` signals, behind `ahead` already accepted, would wait longer than
/// `max_delay` at the current rate of `writers` writers. A request with nothing ahead is always
/// taken, however large: alone, it is written as fast as the database can. Until the rate is
/// known, about one request per writer (or one learning batch each, if larger) is accepted: a
/// fresh server facing a slow database must not queue more than it can write in time.
pub(super) fn too_slow(
    rate: &DrainRate,
    writers: usize,
    ahead: usize,
    own: usize,
    max_delay: Duration,
) -> bool {
    if ahead == 0 {
        return false;
    }
    match rate.per_writer() {
        Some(per_writer) => (ahead + own) as f64 / (per_writer * writers as f64) > max_delay.as_secs_f64(),
        None => ahead + own > writers * own.max(LEARNING_BATCH_SIGNALS),
    }
}

/// The most signals one batch should carry so that it is written within half of `max_delay`
/// at the current rate; never below one request, never above `configured`. Until the rate is
/// known, batches stay small enough to learn it quickly without risking a timeout on a slow
/// database.
pub(super) fn batch_cap(rate: &DrainRate, configured: usize, max_delay: Duration) -> usize {
    match rate.per_writer() {
        Some(per_writer) => ((per_writer * max_delay.as_secs_f64() / 2.0) as usize).clamp(1, configured),
        None => configured.min(LEARNING_BATCH_SIGNALS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_batches_teach_nothing_and_large_ones_set_the_rate() {
        let rate = DrainRate::default();
        rate.record(10, Duration::from_millis(1));
        assert_eq!(rate.per_writer(), None);
        rate.record(1000, Duration::from_millis(500));
        assert_eq!(rate.per_writer(), Some(2000.0));
        rate.record(1000, Duration::from_secs(1));
        let blended = rate.per_writer().unwrap();
        assert!((blended - 1700.0).abs() < 1e-6, "{blended}");
    }

    #[test]
    fn admission_refuses_only_a_backlog_slower_than_the_budget() {
        let rate = DrainRate::default();
        let budget = Duration::from_millis(1500);
        // Unknown rate: the writers' learning batches (8 x 200), or 8 requests when larger.
        assert!(!too_slow(&rate, 8, 0, 100_000, budget));
        assert!(!too_slow(&rate, 8, 1_400, 200, budget));
        assert!(too_slow(&rate, 8, 1_401, 200, budget));
        assert!(!too_slow(&rate, 8, 7 * 512, 512, budget), "eight 512-span exports");
        assert!(too_slow(&rate, 8, 8 * 512, 512, budget));
        rate.record(500, Duration::from_secs(1)); // 500/s per writer, 4,000/s with 8
        assert!(!too_slow(&rate, 8, 0, 1_000_000, budget), "nothing ahead: always taken");
        assert!(!too_slow(&rate, 8, 5_000, 900, budget), "5,900 signals take 1.47 s");
        assert!(too_slow(&rate, 8, 5_000, 1_100, budget), "6,100 signals take 1.53 s");
    }

    #[test]
    fn batches_shrink_to_what_the_database_writes_in_time() {
        let rate = DrainRate::default();
        let budget = Duration::from_millis(1500);
        assert_eq!(batch_cap(&rate, 2000, budget), 200, "small batches until the rate is known");
        assert_eq!(batch_cap(&rate, 50, budget), 50);
        rate.record(500, Duration::from_secs(1));
        assert_eq!(batch_cap(&rate, 2000, budget), 375);
        rate.record(100_000, Duration::from_millis(1));
        assert_eq!(batch_cap(&rate, 2000, budget), 2000);
    }
}
