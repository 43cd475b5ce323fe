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

use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};

use crate::mapping::json_out::{stored_text, JsonOut};
use crate::mapping::limits::{truncation_note, Trimmed, ValueLimits};
use crate::model::payload::{Payload, Shared};
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

use crate::model::payload::time_of_nanos as time_from_nanos;

/// Ends a payload written by `out`: the `truncated` note when the limits cut anything from it
/// or from its shared part, then the closing brace.
fn finish(mut out: JsonOut, shared: &Shared) -> Payload {
    let carried =
        Trimmed { attributes_dropped: shared.attributes_dropped, values_truncated: shared.values_truncated };
    let noted = out.trimmed.plus(carried);
    if noted != Trimmed::default() {
        out.key("truncated");
        out.raw(&truncation_note(noted, out.limits).to_string());
    }
    out.end_object();
    Payload::from_encoded(out.finish())
}

/// `text` as it is stored (for the facts triage reads).
fn limited(text: &str, limits: ValueLimits) -> String {
    stored_text(text, limits.value_length).0.into_owned()
}

/// The `exception.type` attribute (the last, as in an object), when it is a non-empty string.
fn exception_type(attributes: &[KeyValue], limits: ValueLimits) -> Option<String> {
    match attributes.iter().rev().find(|kv| kv.key == "exception.type")?.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) if !s.is_empty() => Some(limited(s, limits)),
        _ => None,
    }
}

/// The first known time of `candidates` (OTLP nanoseconds, 0 meaning unknown), in the order a
/// record's time fields are preferred; `None` when the record carries no time at all.
fn first_known_time(candidates: &[u64]) -> Option<DateTime<Utc>> {
    candidates.iter().find_map(|nanos| time_from_nanos(*nanos))
}

#[cfg(test)]
mod tests;
