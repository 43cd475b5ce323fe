//! Our own data model: plain types shared by mapping, storage and the API.
//! No OTLP, HTTP or SQL types here; nothing in this module imports the rest of the crate.

pub mod correlation;
pub mod incident;
pub mod lifecycle;
pub mod limits;
pub mod payload;
pub mod retention;
pub mod rules;
pub mod signal;
pub mod signal_id;
pub mod signal_type;
pub mod time;

pub use incident::{AnalysisResult, Incident, IncidentSeverity, IncidentStatus, Problem};
pub use lifecycle::{sort_early, Lifecycle, RangeSort};
pub use limits::ValueLimits;
pub use retention::{PartitionInterval, Retention};
pub use rules::Rules;
pub use signal::{Signal, SignalKey, SignalType, StoredSignal};
