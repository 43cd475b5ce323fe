//! The correlation key of a signal that has no trace id (docs/contracts.md §6).

use chrono::{DateTime, TimeZone, Utc};
use std::time::Duration;

/// The default width of a correlation window (5 minutes).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

/// `svc:<service_name>:<window start in RFC 3339 UTC>`: the same service in the same window
/// always gets the same key, so its trace-less errors meet in one incident and one analysis.
/// Windows are aligned to the Unix epoch, so every instance computes the same boundaries.
pub fn correlation_key(service_name: &str, at: DateTime<Utc>, window: Duration) -> String {
    let width = window.as_secs().max(1) as i64;
    let start = at.timestamp().div_euclid(width) * width;
    let start = Utc.timestamp_opt(start, 0).single().unwrap_or(at);
    format!("svc:{service_name}:{}", start.format("%Y-%m-%dT%H:%M:%SZ"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn signals_of_one_service_in_one_window_share_a_key() {
        let a = correlation_key("checkout", utc("2024-05-01T10:20:30Z"), DEFAULT_WINDOW);
        let b = correlation_key("checkout", utc("2024-05-01T10:24:59.999Z"), DEFAULT_WINDOW);
        assert_eq!(a, "svc:checkout:2024-05-01T10:20:00Z");
        assert_eq!(a, b);
    }

    #[test]
    fn next_window_or_other_service_gets_another_key() {
        let a = correlation_key("checkout", utc("2024-05-01T10:20:30Z"), DEFAULT_WINDOW);
        assert_ne!(a, correlation_key("checkout", utc("2024-05-01T10:25:00Z"), DEFAULT_WINDOW));
        assert_ne!(a, correlation_key("payments", utc("2024-05-01T10:20:30Z"), DEFAULT_WINDOW));
    }

    #[test]
    fn window_is_configurable_and_handles_times_before_the_epoch() {
        let key = correlation_key("svc", utc("1969-12-31T23:59:30Z"), Duration::from_secs(60));
        assert_eq!(key, "svc:svc:1969-12-31T23:59:00Z");
    }
}
