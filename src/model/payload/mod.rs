//! A signal's payload in its two forms: as stored (what the analysis worker reads,
//! docs/contracts.md §1) and as the query API answers it. They differ only for OTLP signals:
//!
//! - what the records of one export share (the resource's attributes and the instrumentation
//!   scope) is stored once per distinct value, in `signal_shared`, and re-attached on read;
//! - a field holding its default (`""`, `0`, `null`, `[]`, all-zero counts) is not stored;
//! - a span's `start_time` and `end_time` are not stored when its nanosecond fields give them.
//!
//! [`api_form`] is the one place that turns the first form into the second, and
//! [`OTLP_DEFAULTS`] the one list of what may be left out (the OTLP encoders leave out exactly
//! these; tests/it/api_shapes.rs checks every answer against the form from before). Legacy
//! payloads are stored whole.

mod api_form;
mod facts;
pub mod keys;

use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};
use uuid::Uuid;

pub use api_form::{api_form, omitted_defaults, time_of_nanos, Omitted, OTLP_DEFAULTS};
pub use facts::{is_error_sql, Facts, OPERATION_SQL, UNNAMED_OPERATION};

/// An encoded payload: one JSON object, canonical keys, limits applied, no NUL anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload(String);

impl Payload {
    /// `text` must be one JSON object (the encoders guarantee it; the database checks it again).
    pub fn from_encoded(text: String) -> Payload {
        Payload(text)
    }

    pub fn from_map(map: Map<String, Value>) -> Payload {
        Payload(Value::Object(map).to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The payload as a JSON object (tests, and the slow paths that need a tree).
    pub fn to_map(&self) -> Map<String, Value> {
        match serde_json::from_str(&self.0) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}

/// What the records of one OTLP export (one resource and one scope) share, encoded once.
/// Identified by its content, so equal resources and scopes are stored once however many
/// exports, instances and days carry them.
#[derive(Debug)]
pub struct Shared {
    pub id: Uuid,
    /// The resource's attributes, a JSON object.
    pub resource: String,
    /// `{name, version, attributes}` of the scope, a JSON object.
    pub scope: String,
    /// What the limits cut from the resource and scope: counted in each record's `truncated`,
    /// as when every payload carried its own copy.
    pub attributes_dropped: u64,
    pub values_truncated: u64,
    lowercase: OnceLock<String>,
}

/// Namespace of the content-addressed ids of shared parts.
const SHARED_NAMESPACE: Uuid = Uuid::from_u128(0x7d1e_52a4_0c3b_4f6e_9a8d_1b2c_3d4e_5f60);

impl PartialEq for Shared {
    fn eq(&self, other: &Shared) -> bool {
        self.id == other.id
    }
}

impl Shared {
    pub fn new(
        resource: String,
        scope: String,
        attributes_dropped: u64,
        values_truncated: u64,
    ) -> Arc<Shared> {
        let mut content = Vec::with_capacity(resource.len() + scope.len() + 8);
        content.extend_from_slice(&(resource.len() as u64).to_le_bytes());
        content.extend_from_slice(resource.as_bytes());
        content.extend_from_slice(scope.as_bytes());
        Arc::new(Shared {
            id: Uuid::new_v5(&SHARED_NAMESPACE, &content),
            resource,
            scope,
            attributes_dropped,
            values_truncated,
            lowercase: OnceLock::new(),
        })
    }

    /// Resource and scope text in lower case, for the analysis keywords (computed once).
    pub fn lowercase_text(&self) -> &str {
        self.lowercase.get_or_init(|| format!("{} {}", self.resource, self.scope).to_lowercase())
    }
}
