//! OTLP/JSON -> the protobuf request types, by our own walker over `serde_json::Value`.
//!
//! Why not the `with-serde` derives of opentelemetry-proto: they read ids of the wrong length,
//! refuse `null`, enum names and NaN strings, ignore snake_case keys, and silently empty a
//! metric whose value fails to parse (a flattened `Option`), answering 200 for lost data.
//! Here every field is read explicitly, and anything not OTLP/JSON is an error naming its path.

mod common;
mod logs;
mod metrics;
mod reader;
mod trace;

pub use logs::logs_request;
pub use metrics::metrics_request;
pub use reader::{JsonError, JsonResult};
pub use trace::traces_request;

#[cfg(test)]
mod tests;
