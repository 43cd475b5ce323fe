//! A telemetry signal as we store it, whatever transport brought it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::payload::{api_form, Facts, Payload, Shared};
pub use super::signal_type::SignalType;

/// A signal ready to be stored: every field already validated and normalised
/// (no NUL characters, canonical payload keys of docs/contracts.md §1, value limits applied).
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub signal_id: Uuid,
    pub signal_type: SignalType,
    /// The correlation key: a real trace id, or `svc:<service>:<window>` for trace-less signals.
    pub trace_id: String,
    pub service_name: String,
    pub timestamp: DateTime<Utc>,
    /// The payload as stored ([`crate::model::payload`]).
    pub payload: Payload,
    /// What triage reads, taken when the payload was made.
    pub facts: Facts,
    /// The resource and scope of an OTLP signal, stored once for all the signals sharing them;
    /// `None` for a legacy signal.
    pub shared: Option<Arc<Shared>>,
    /// The record carried no time at all (an OTLP record whose every time field is 0): the
    /// timestamp is when we received it, so a retry cannot be recognised by its time.
    pub time_unknown: bool,
}

/// What identifies a stored signal: a retry with the same key is a duplicate. The time is part
/// of it because the table is partitioned by time (migrations/0007).
pub type SignalKey = (Uuid, DateTime<Utc>, SignalType);

impl Signal {
    pub fn key(&self) -> SignalKey {
        (self.signal_id, self.timestamp, self.signal_type)
    }

    /// The payload as the query API will return it (tests, and checks of the stored form).
    pub fn api_payload(&self) -> Map<String, Value> {
        let shared = self.shared.as_ref().map(|s| {
            let parse = |text: &str| serde_json::from_str(text).unwrap_or(Value::Null);
            (parse(&s.resource), parse(&s.scope))
        });
        match api_form(self.signal_type, Value::Object(self.payload.to_map()), shared) {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }
}

/// A signal as read back from the store, shaped as the query API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StoredSignal {
    pub id: Uuid,
    pub signal_type: SignalType,
    pub trace_id: String,
    pub service_name: String,
    #[serde(serialize_with = "crate::model::time::serialize")]
    pub timestamp: DateTime<Utc>,
    /// The canonical payload (keys per signal type: see the README's mapping).
    #[schema(value_type = Object)]
    pub payload: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_type_labels_round_trip() {
        for t in SignalType::ALL {
            assert_eq!(SignalType::parse(t.as_str()), Some(t));
        }
        assert_eq!(SignalType::parse("LOG"), None);
    }
}
