//! What each signal of a batch means for its incident, in the column form the batch write
//! takes. The per-trace aggregation itself happens in the write's single SQL statement, next to
//! the data, so concurrent batches and the analysis worker never overwrite each other.

use std::time::Duration;

use super::fingerprint::fingerprint;
use super::rules::Rules;
use crate::model::{IncidentSeverity, Signal};

/// The triage settings every write uses.
#[derive(Debug, Clone)]
pub struct Triage {
    pub rules: Rules,
    /// Signals assessed below this severity are not tracked (`INCIDENT_MIN_SEVERITY`).
    pub min_severity: IncidentSeverity,
    /// An incident asks for analysis at most once per this window (the Redis lock's TTL).
    pub analysis_window: Duration,
    /// Group errors into problems by fingerprint and request one analysis per problem per this
    /// window (`PROBLEM_ANALYSIS_WINDOW_SECONDS`); `None` (`PROBLEM_GROUPING=false`): no
    /// fingerprints and no problems, one analysis per trace, as before problems existed.
    pub problem_window: Option<Duration>,
}

/// Per-signal triage columns, parallel to the batch's signals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assessments {
    /// Database label of each signal's severity.
    pub severities: Vec<&'static str>,
    /// Whether the signal is tracked in its incident at all.
    pub tracked: Vec<bool>,
    /// Whether the signal asks for an analysis.
    pub requests_analysis: Vec<bool>,
    /// Each error signal's fingerprint key and title (see [`super::fingerprint`]).
    pub fingerprints: Vec<Option<String>>,
    pub titles: Vec<Option<String>>,
}

impl Triage {
    pub fn assess_all(&self, signals: &[&Signal]) -> Assessments {
        let mut assessments = Assessments {
            severities: Vec::with_capacity(signals.len()),
            tracked: Vec::with_capacity(signals.len()),
            requests_analysis: Vec::with_capacity(signals.len()),
            fingerprints: Vec::with_capacity(signals.len()),
            titles: Vec::with_capacity(signals.len()),
        };
        for &signal in signals {
            let assessment = self.rules.assess(signal);
            assessments.severities.push(assessment.severity.db_label());
            assessments.tracked.push(assessment.severity >= self.min_severity);
            assessments.requests_analysis.push(assessment.requests_analysis);
            // With grouping off there are no problems: no fingerprint, no cost.
            let print = self
                .problem_window
                .and_then(|_| fingerprint(signal, assessment.severity >= IncidentSeverity::High));
            assessments.titles.push(print.as_ref().map(|p| p.title.clone()));
            assessments.fingerprints.push(print.map(|p| p.key));
        }
        assessments
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SignalType;
    use serde_json::json;

    fn log(level: &str) -> Signal {
        let serde_json::Value::Object(payload) = json!({"level": level, "message": "m", "attributes": {}})
        else {
            unreachable!("a literal object")
        };
        Signal {
            signal_id: uuid::Uuid::new_v4(),
            signal_type: SignalType::Log,
            trace_id: "t".to_owned(),
            service_name: "s".to_owned(),
            timestamp: chrono::Utc::now(),
            facts: crate::model::payload::Facts::of_payload(SignalType::Log, &payload),
            payload: crate::model::payload::Payload::from_map(payload),
            shared: None,
            time_unknown: false,
        }
    }

    fn triage(min_severity: IncidentSeverity) -> Triage {
        Triage {
            rules: Rules::default(),
            min_severity,
            analysis_window: Duration::from_secs(300),
            problem_window: Some(Duration::from_secs(600)),
        }
    }

    #[test]
    fn each_signal_gets_its_columns() {
        let signals = [log("INFO"), log("ERROR"), log("CRITICAL")];
        let a = triage(IncidentSeverity::Low).assess_all(&signals.iter().collect::<Vec<_>>());
        assert_eq!(a.severities, ["LOW", "HIGH", "CRITICAL"]);
        assert_eq!(a.tracked, [true, true, true]);
        assert_eq!(a.requests_analysis, [false, true, true]);
    }

    #[test]
    fn signals_below_the_minimum_severity_are_not_tracked() {
        let a = triage(IncidentSeverity::High).assess_all(&[&log("INFO"), &log("ERROR")]);
        assert_eq!(a.tracked, [false, true]);
    }
}
