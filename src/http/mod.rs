//! What the two HTTP surfaces of the API port share (the query API in `api`, the legacy ingest
//! endpoints in `receivers::legacy`): errors in FastAPI's shapes, the bearer-token middleware,
//! and the OpenAPI schemas of shared bodies. Both import this module; it imports neither.

pub mod error;
pub mod schema;

pub use error::{require_token, ApiError, StoreFailure};
