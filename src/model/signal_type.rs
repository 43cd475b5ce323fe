//! The kind of a signal: its own file, so the payload module and the signal module both use
//! it without importing each other.

use serde::Serialize;

/// The three kinds of telemetry. Database labels (`signaltypeenum`) and API values are the
/// same lower-case words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignalType {
    Log,
    Trace,
    Metric,
}

impl SignalType {
    pub const ALL: [SignalType; 3] = [SignalType::Log, SignalType::Trace, SignalType::Metric];

    /// The label used both in the `signaltypeenum` database type and in the HTTP API.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalType::Log => "log",
            SignalType::Trace => "trace",
            SignalType::Metric => "metric",
        }
    }

    pub fn parse(label: &str) -> Option<SignalType> {
        SignalType::ALL.into_iter().find(|t| t.as_str() == label)
    }
}
