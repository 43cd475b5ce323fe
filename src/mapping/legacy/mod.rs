//! The original backend's JSON bodies (CONTRACTS §4) -> signals.
//!
//! A body is one object or an array of them. Every object is validated in full; if any is
//! invalid the whole body is refused with every problem located (`["body", index, field]`), so a
//! bulk request is stored entirely or not at all.

mod fields;
mod logs;
mod metrics;
mod spans;

use std::time::Duration;

use serde_json::Value;

use crate::model::Signal;
use crate::validation::{FieldError, LocPart};

pub use fields::MAX_IDENTIFIER_CHARS;

/// Which legacy endpoint a body was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyKind {
    Logs,
    Traces,
    Metrics,
}

/// Settings the mapping needs; no clock and no I/O.
#[derive(Debug, Clone, Copy)]
pub struct LegacyOptions {
    /// Width of the window that groups a service's trace-less signals (CONTRACTS §6).
    pub correlation_window: Duration,
}

/// At most this many field errors are reported for one body; the rest are summarised.
const MAX_REPORTED_ERRORS: usize = 100;

/// Maps a parsed JSON body to signals, or explains every invalid field.
pub fn signals_from_json(
    kind: LegacyKind,
    body: &Value,
    options: &LegacyOptions,
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
    options: &LegacyOptions,
) -> Result<Signal, Vec<FieldError>> {
    match kind {
        LegacyKind::Logs => logs::log_signal(value, loc, options),
        LegacyKind::Traces => spans::span_signal(value, loc, options),
        LegacyKind::Metrics => metrics::metric_signal(value, loc, options),
    }
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

/// The correlation key for a signal: its own trace id, or the service's window key.
fn trace_or_correlation_key(
    trace_id: Option<String>,
    service_name: &str,
    at: chrono::DateTime<chrono::Utc>,
    options: &LegacyOptions,
) -> String {
    trace_id.unwrap_or_else(|| {
        crate::model::correlation::correlation_key(service_name, at, options.correlation_window)
    })
}

#[cfg(test)]
pub(crate) mod tests;
