//! The few facts about a payload that rules, fingerprints, the trace tree and the store's
//! queries act on, and the one definition of an error signal they all use.

use serde_json::{Map, Value};

use super::keys;
use crate::model::signal_type::SignalType;

/// The few typed facts triage and fingerprints read, taken while the payload is encoded so
/// nobody parses it back. [`Facts::of_payload`] reads the same facts from a JSON payload: one
/// meaning, two sources (the mapping tests check they agree).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// A log's level as stored (`ERROR`, …).
    pub level: Option<String>,
    /// A log's message, a span's name, a metric's name.
    pub text: Option<String>,
    /// A span whose status is ERROR.
    pub failed: bool,
    /// A log with a stack trace or exception attributes; a span with an `exception` event.
    pub exception: bool,
    /// The exception's type, when a log attribute or a span's exception event names one.
    pub exception_type: Option<String>,
    /// A metric's value as a number.
    pub value: Option<f64>,
    /// An OTLP span's kind as stored (`SERVER`, …); `None` for a legacy span.
    pub kind: Option<String>,
}

/// The operation name of a span without a name (a legacy span of the code shape has none).
pub const UNNAMED_OPERATION: &str = "(unnamed)";

/// [`Facts::operation`] in SQL, over a span's stored `payload`.
pub const OPERATION_SQL: &str = "coalesce(nullif(payload->>'name', ''), '(unnamed)')";

impl Facts {
    /// A span's operation, as the Jaeger API lists and searches it: its name, or
    /// [`UNNAMED_OPERATION`].
    pub fn operation(&self) -> &str {
        self.text.as_deref().filter(|name| !name.is_empty()).unwrap_or(UNNAMED_OPERATION)
    }

    pub fn of_payload(signal_type: SignalType, payload: &Map<String, Value>) -> Facts {
        let text = |key: &str| payload.get(key).and_then(Value::as_str).map(str::to_owned);
        match signal_type {
            SignalType::Log => {
                let attributes = payload.get(keys::ATTRIBUTES).and_then(Value::as_object);
                let has_stack =
                    payload.get(keys::STACK_TRACE).and_then(Value::as_str).is_some_and(|s| !s.is_empty());
                let has_exception = attributes.is_some_and(|a| {
                    a.contains_key(keys::EXCEPTION_TYPE) || a.contains_key(keys::EXCEPTION_MESSAGE)
                });
                Facts {
                    level: text(keys::LEVEL),
                    text: text(keys::MESSAGE),
                    exception: has_stack || has_exception,
                    exception_type: attributes
                        .and_then(|a| a.get(keys::EXCEPTION_TYPE)?.as_str())
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned),
                    ..Facts::default()
                }
            }
            SignalType::Trace => {
                let events = payload.get(keys::EVENTS).and_then(Value::as_array);
                let exceptions = || {
                    events
                        .into_iter()
                        .flatten()
                        .filter(|e| e.get(keys::NAME).and_then(Value::as_str) == Some(keys::EXCEPTION_EVENT))
                };
                Facts {
                    text: text(keys::NAME),
                    kind: text(keys::KIND),
                    failed: payload.get(keys::STATUS).and_then(Value::as_str) == Some(keys::STATUS_ERROR),
                    exception: exceptions().next().is_some(),
                    exception_type: exceptions()
                        .find_map(|e| {
                            e.get(keys::ATTRIBUTES)?
                                .get(keys::EXCEPTION_TYPE)?
                                .as_str()
                                .filter(|t| !t.is_empty())
                        })
                        .map(str::to_owned),
                    ..Facts::default()
                }
            }
            SignalType::Metric => Facts {
                text: text(keys::METRIC_NAME),
                value: payload.get(keys::VALUE).and_then(Value::as_f64),
                ..Facts::default()
            },
        }
    }

    /// Whether this is an error signal: a log at an error level ([`keys::ERROR_LEVELS`]), a span
    /// that failed or recorded an exception. Metrics are never errors by themselves (a rule can
    /// raise one: see `incidents::fingerprint`). The one definition: [`is_error_sql`] is the same
    /// test over a stored row, and tests/it/error_signals.rs checks every reader agrees.
    pub fn is_error(&self, signal_type: SignalType) -> bool {
        match signal_type {
            SignalType::Log => self.level.as_deref().is_some_and(|l| keys::ERROR_LEVELS.contains(&l)),
            SignalType::Trace => self.failed || self.exception,
            SignalType::Metric => false,
        }
    }
}

/// [`Facts::is_error`] over a stored row of `raw_signals` (its `signal_type` and `payload`), as
/// SQL. Never null: a null would sort before `true` in a descending order.
pub fn is_error_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let levels = keys::ERROR_LEVELS.map(|l| format!("'{l}'")).join(", ");
        let exception_event = serde_json::json!([{ keys::NAME: keys::EXCEPTION_EVENT }]);
        format!(
            "coalesce(CASE signal_type \
               WHEN 'log' THEN payload->>'{level}' IN ({levels}) \
               WHEN 'trace' THEN payload->>'{status}' = '{error}' OR payload->'{events}' @> '{exception_event}' \
               ELSE false END, false)",
            level = keys::LEVEL,
            status = keys::STATUS,
            error = keys::STATUS_ERROR,
            events = keys::EVENTS,
        )
    })
}
