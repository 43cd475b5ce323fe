//! The payload keys and values that carry meaning: the encoders write them, and everything that
//! acts on a payload (facts, the trace tree, the store's SQL) reads them from here. The analysis
//! worker reads the same keys (docs/contracts.md §1), so none of them may change.

pub const LEVEL: &str = "level";
pub const MESSAGE: &str = "message";
pub const STACK_TRACE: &str = "stack_trace";
pub const ATTRIBUTES: &str = "attributes";
pub const NAME: &str = "name";
pub const STATUS: &str = "status";
pub const STATUS_MESSAGE: &str = "status_message";
pub const KIND: &str = "kind";
pub const EVENTS: &str = "events";
pub const SPAN_ID: &str = "span_id";
pub const PARENT_SPAN_ID: &str = "parent_span_id";
pub const DURATION_MS: &str = "duration_ms";
pub const METRIC_NAME: &str = "metric_name";
pub const VALUE: &str = "value";

/// A span's `status` when it failed.
pub const STATUS_ERROR: &str = "ERROR";
/// The name of a span event that records an exception (OpenTelemetry semantic conventions).
pub const EXCEPTION_EVENT: &str = "exception";
/// Attributes naming an exception, on a log record or an exception event.
pub const EXCEPTION_TYPE: &str = "exception.type";
pub const EXCEPTION_MESSAGE: &str = "exception.message";
/// Log levels (as stored: upper case, `FATAL` stored as `CRITICAL`) that make a log an error.
pub const ERROR_LEVELS: [&str; 2] = ["ERROR", "CRITICAL"];
