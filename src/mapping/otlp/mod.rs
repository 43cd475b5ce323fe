//! OTLP requests (protobuf types, whichever transport and encoding brought them) -> signals.
//! Pure: `received_at` is a parameter. Records that decode but are invalid (ids of the wrong
//! length, a metric without data, a point without value) are counted as rejected with a reason,
//! for the OTLP `partial_success` answer; they never fail the request.

mod attributes;
mod ids;
mod logs;
mod metrics;
mod spans;

pub use attributes::UNKNOWN_SERVICE;
pub use logs::logs_to_signals;
pub use metrics::metrics_to_signals;
pub use spans::spans_to_signals;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use crate::model::time::format_timestamp;
use crate::model::Signal;

/// At most this many distinct rejection reasons are kept for the answer's `error_message`.
const MAX_REASONS: usize = 5;

/// The outcome of mapping one request.
#[derive(Debug, Default)]
pub struct Mapped {
    pub signals: Vec<Signal>,
    /// Records (spans, log records, data points) that could not be mapped.
    pub rejected: u64,
    reasons: Vec<String>,
}

impl Mapped {
    fn with_capacity(capacity: usize) -> Mapped {
        Mapped { signals: Vec::with_capacity(capacity), ..Default::default() }
    }

    fn reject(&mut self, why: String) {
        self.rejected += 1;
        if self.reasons.len() < MAX_REASONS && !self.reasons.contains(&why) {
            self.reasons.push(why);
        }
    }

    /// The English explanation for `partial_success.error_message`; `None` when nothing was
    /// rejected.
    pub fn error_message(&self) -> Option<String> {
        if self.rejected == 0 {
            return None;
        }
        let mut message = format!("{} rejected: {}", self.rejected, self.reasons.join("; "));
        if self.rejected as usize > self.reasons.len() {
            message.push_str(" (first reasons shown)");
        }
        Some(message)
    }
}

/// OTLP nanoseconds since the epoch; 0 means "unknown".
fn time_from_nanos(nanos: u64) -> Option<DateTime<Utc>> {
    if nanos == 0 {
        return None;
    }
    // u64 nanoseconds reach the year 2554, well inside chrono's range.
    Utc.timestamp_opt((nanos / 1_000_000_000) as i64, (nanos % 1_000_000_000) as u32).single()
}

/// The first known time of `candidates` (OTLP nanoseconds, 0 meaning unknown), in the order a
/// record's time fields are preferred; `None` when the record carries no time at all.
fn first_known_time(candidates: &[u64]) -> Option<DateTime<Utc>> {
    candidates.iter().find_map(|nanos| time_from_nanos(*nanos))
}

/// RFC 3339 text of an OTLP time, `null` when unknown.
fn time_json(nanos: u64) -> Value {
    time_from_nanos(nanos).map_or(Value::Null, |t| Value::String(format_timestamp(&t)))
}

/// The original nanoseconds, as text: JSON numbers beyond 2^53 lose precision in most readers.
fn nanos_json(nanos: u64) -> Value {
    Value::String(nanos.to_string())
}

#[cfg(test)]
mod tests;
