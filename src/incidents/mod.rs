//! Incident rules and triage: pure decisions about what a signal means for its incident and
//! whether an analysis is due. No SQL and no Redis here.

pub mod escalation;
pub mod fingerprint;
pub mod rules;
pub mod triage;

pub use escalation::Escalation;
pub use fingerprint::{fingerprint, Fingerprint};
pub use rules::{MetricRule, Rules, RulesError};
pub use triage::{Assessments, Triage};
