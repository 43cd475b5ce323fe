//! Turning a batch of newly stored signals into one update per incident (trace). Aggregating
//! per batch first means each incident row is written once per batch, and the per-trace lock
//! keys give concurrent batches one global locking order, so they never deadlock.

use std::collections::BTreeMap;
use std::time::Duration;

use sha2::{Digest, Sha256};

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
}

/// What one batch adds to the incident of one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceActivity {
    pub trace_id: String,
    /// Key of the transaction-level advisory lock that serialises writers of this trace.
    pub lock_key: i32,
    /// Tracked signals (each adds 1 to `error_count`, as the original did).
    pub signals: i64,
    /// Services seen, in order of first appearance.
    pub services: Vec<String>,
    /// The highest severity among the signals.
    pub severity: IncidentSeverity,
    /// Signals assessed HIGH or above (towards the CRITICAL escalation).
    pub high_signals: i64,
    /// At least one signal asks for analysis.
    pub requests_analysis: bool,
}

/// One `TraceActivity` per trace among `signals`, ordered by lock key (then trace id): the
/// order in which locks must be taken. Signals below `min_severity` are skipped.
pub fn aggregate<'a>(signals: impl IntoIterator<Item = &'a Signal>, triage: &Triage) -> Vec<TraceActivity> {
    let mut by_trace: BTreeMap<&str, TraceActivity> = BTreeMap::new();
    for signal in signals {
        let assessment = triage.rules.assess(signal);
        if assessment.severity < triage.min_severity {
            continue;
        }
        let activity = by_trace.entry(signal.trace_id.as_str()).or_insert_with(|| TraceActivity {
            trace_id: signal.trace_id.clone(),
            lock_key: lock_key(&signal.trace_id),
            signals: 0,
            services: Vec::new(),
            severity: IncidentSeverity::Low,
            high_signals: 0,
            requests_analysis: false,
        });
        activity.signals += 1;
        if !activity.services.contains(&signal.service_name) {
            activity.services.push(signal.service_name.clone());
        }
        activity.severity = activity.severity.max(assessment.severity);
        if assessment.severity >= IncidentSeverity::High {
            activity.high_signals += 1;
        }
        activity.requests_analysis |= assessment.requests_analysis;
    }
    let mut activities: Vec<TraceActivity> = by_trace.into_values().collect();
    activities.sort_by(|a, b| (a.lock_key, &a.trace_id).cmp(&(b.lock_key, &b.trace_id)));
    activities
}

/// A stable 32-bit key per trace id; collisions only make two traces share a lock.
fn lock_key(trace_id: &str) -> i32 {
    let digest = Sha256::digest(trace_id.as_bytes());
    i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SignalType;
    use serde_json::json;

    fn log(trace_id: &str, service: &str, level: &str) -> Signal {
        let serde_json::Value::Object(payload) = json!({"level": level, "message": "m", "attributes": {}})
        else {
            unreachable!()
        };
        Signal {
            signal_id: uuid::Uuid::new_v4(),
            signal_type: SignalType::Log,
            trace_id: trace_id.to_owned(),
            service_name: service.to_owned(),
            timestamp: chrono::Utc::now(),
            payload,
        }
    }

    fn triage(min_severity: IncidentSeverity) -> Triage {
        Triage { rules: Rules::default(), min_severity, analysis_window: Duration::from_secs(300) }
    }

    #[test]
    fn signals_are_aggregated_per_trace() {
        let signals = [
            log("t1", "a", "INFO"),
            log("t1", "b", "ERROR"),
            log("t1", "a", "ERROR"),
            log("t2", "c", "INFO"),
        ];
        let activities = aggregate(&signals, &triage(IncidentSeverity::Low));
        assert_eq!(activities.len(), 2);
        let t1 = activities.iter().find(|a| a.trace_id == "t1").unwrap();
        assert_eq!((t1.signals, t1.high_signals), (3, 2));
        assert_eq!(t1.services, ["a", "b"]);
        assert_eq!(t1.severity, IncidentSeverity::High);
        assert!(t1.requests_analysis);
        let t2 = activities.iter().find(|a| a.trace_id == "t2").unwrap();
        assert_eq!((t2.signals, t2.severity, t2.requests_analysis), (1, IncidentSeverity::Low, false));
    }

    #[test]
    fn activities_come_in_lock_key_order() {
        let signals: Vec<Signal> = (0..50).map(|i| log(&format!("trace-{i}"), "s", "INFO")).collect();
        let activities = aggregate(&signals, &triage(IncidentSeverity::Low));
        assert!(activities.windows(2).all(|w| w[0].lock_key <= w[1].lock_key));
        assert_eq!(lock_key("trace-1"), lock_key("trace-1"));
    }

    #[test]
    fn signals_below_the_minimum_severity_are_not_tracked() {
        let signals = [log("t1", "a", "INFO"), log("t2", "a", "ERROR")];
        let activities = aggregate(&signals, &triage(IncidentSeverity::High));
        assert_eq!(activities.iter().map(|a| a.trace_id.as_str()).collect::<Vec<_>>(), ["t2"]);
    }
}
