//! Transports only: read a request, hand its signals to [`crate::ingest`], answer.
//! Nothing else in the crate imports this module; `app` mounts it.

pub mod legacy;
pub mod otlp_export;
pub mod otlp_grpc;
pub mod otlp_http;
pub mod otlp_json;
