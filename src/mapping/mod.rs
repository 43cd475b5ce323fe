//! Wire formats -> our signal model. Pure: no I/O, no clock; one file per source format and
//! signal type.

pub mod json_out;
pub mod legacy;
pub mod limits;
pub mod otlp;
pub mod text;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::correlation::correlation_key;

/// Settings the mappings need; no clock and no I/O.
#[derive(Debug, Clone, Copy)]
pub struct MappingOptions {
    /// Width of the window that groups a service's trace-less signals (docs/contracts.md §6).
    pub correlation_window: Duration,
    /// `ATTRIBUTE_COUNT_LIMIT` and `VALUE_LENGTH_LIMIT`, applied as payloads are made.
    pub limits: limits::ValueLimits,
}

/// The correlation key for a signal: its own trace id, or the service's window key.
pub(crate) fn trace_or_correlation_key(
    trace_id: Option<String>,
    service_name: &str,
    at: DateTime<Utc>,
    options: &MappingOptions,
) -> String {
    trace_id.unwrap_or_else(|| correlation_key(service_name, at, options.correlation_window))
}
