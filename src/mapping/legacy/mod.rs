//! The original backend's JSON bodies (docs/contracts.md §4) -> signals.
//!
//! A body is one object or an array of them. Every object is validated in full; if any is
//! invalid the whole body is refused with every problem located (`["body", index, field]`), so a
//! bulk request is stored entirely or not at all.

mod fields;
mod logs;
mod metrics;
mod spans;

use serde_json::Value;

use super::MappingOptions;
use crate::model::payload::{Facts, Payload};
use crate::model::Signal;
use crate::validation::{FieldError, LocPart};

pub use fields::MAX_IDENTIFIER_CHARS;
pub use spans::MAX_DURATION_MS;

/// Which legacy endpoint a body was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyKind {
    Logs,
    Traces,
    Metrics,
}

impl LegacyKind {
    /// The type of the signals this endpoint stores.
    pub fn signal_type(self) -> crate::model::SignalType {
        match self {
            LegacyKind::Logs => crate::model::SignalType::Log,
            LegacyKind::Traces => crate::model::SignalType::Trace,
            LegacyKind::Metrics => crate::model::SignalType::Metric,
        }
    }
}

/// At most this many field errors are reported for one body; the rest are summarised.
const MAX_REPORTED_ERRORS: usize = 100;

/// Maps a parsed JSON body to signals, or explains every invalid field.
pub fn signals_from_json(
    kind: LegacyKind,
    body: &Value,
    options: &MappingOptions,
) -> Result<Vec<Signal>, Vec<FieldError>> {
    let root = vec![LocPart::from("body")];
    let Value::Array(items) = body else {
        return signal_from_object(kind, body, root, options).map(|signal| vec![signal]);
    };
    let mut signals = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let mut loc = root.clone();
        loc.push(LocPart::Index(index));
        match signal_from_object(kind, item, loc, options) {
            Ok(signal) => signals.push(signal),
            Err(mut item_errors) => errors.append(&mut item_errors),
        }
    }
    if errors.is_empty() {
        Ok(signals)
    } else {
        Err(capped(errors))
    }
}

fn signal_from_object(
    kind: LegacyKind,
    value: &Value,
    loc: Vec<LocPart>,
    options: &MappingOptions,
) -> Result<Signal, Vec<FieldError>> {
    match kind {
        LegacyKind::Logs => logs::log_signal(value, loc, options),
        LegacyKind::Traces => spans::span_signal(value, loc, options),
        LegacyKind::Metrics => metrics::metric_signal(value, loc, options),
    }
}

/// A legacy payload as stored: limits applied, whole (nothing is shared or omitted).
fn legacy_payload(
    signal_type: crate::model::SignalType,
    mut payload: serde_json::Map<String, Value>,
    options: &MappingOptions,
) -> (Payload, Facts) {
    super::limits::apply(&mut payload, options.limits);
    let facts = Facts::of_payload(signal_type, &payload);
    (Payload::from_map(payload), facts)
}

fn capped(mut errors: Vec<FieldError>) -> Vec<FieldError> {
    if errors.len() > MAX_REPORTED_ERRORS {
        let hidden = errors.len() - MAX_REPORTED_ERRORS;
        errors.truncate(MAX_REPORTED_ERRORS);
        errors.push(FieldError::new(
            "too_many_errors",
            vec![LocPart::from("body")],
            format!("{hidden} more errors not shown"),
        ));
    }
    errors
}

#[cfg(test)]
pub(crate) mod tests;
