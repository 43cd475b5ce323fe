//! Judged reads turned into failures, each with its check, kind and what differed: for the
//! first read of a write, for a spot check of an earlier one (against its retention), and for
//! the incident of its trace. Pure: the runner does the reading.

use std::time::Duration;

use serde_json::Value;

use super::compare::{Finding, Judgement};
use super::expected::Expected;
use super::metrics::{Check, Kind};
use super::plan::Health;
use super::spot::{Expectation, Lifetimes};

/// One failed check, as logged and counted.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub check: Check,
    pub kind: Kind,
    /// Which signal (`span.otlp_grpc.root`), or `incident`.
    pub signal: String,
    /// What differed: field paths with expected and found values, or what was not found.
    pub detail: String,
}

fn failure(check: Check, kind: Kind, signal: &str, detail: impl Into<String>) -> Failure {
    Failure { check, kind, signal: signal.to_owned(), detail: detail.into() }
}

fn changed(check: Check, signal: &Expected, finding: &Finding) -> Option<Failure> {
    match finding {
        Finding::Changed(diffs) => {
            let detail = diffs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            Some(failure(check, Kind::incorrect, signal.name(), detail))
        }
        Finding::Duplicated(n) => {
            Some(failure(check, Kind::duplicate, signal.name(), format!("stored {n} times")))
        }
        Finding::Intact | Finding::Missing => None,
    }
}

fn unexpected(check: Check, judgement: &Judgement) -> impl Iterator<Item = Failure> + '_ {
    judgement.unexpected.iter().map(move |row| {
        let name = row["payload"]["attributes"][super::plan::MARKER].as_str().unwrap_or("a row");
        failure(
            check,
            Kind::unexpected,
            name,
            format!("never written: id {}, {}", row["id"], row["signal_type"]),
        )
    })
}

/// The first read of a write: `late[i]` tells whether signal `i` was first found after the
/// first read. `judgement` is the last read's (`None`: no read was answered).
pub fn read_failures(
    expected: &[Expected],
    judgement: Option<&Judgement>,
    late: &[bool],
    max_wait: Duration,
    read_error: Option<&str>,
) -> Vec<Failure> {
    let Some(judgement) = judgement else {
        let why = read_error.unwrap_or("no answer");
        return expected
            .iter()
            .map(|e| {
                failure(
                    Check::read,
                    Kind::request_failed,
                    e.name(),
                    format!("no read answered in {max_wait:?}: {why}"),
                )
            })
            .collect();
    };
    let mut out = Vec::new();
    for (i, (signal, finding)) in expected.iter().zip(&judgement.findings).enumerate() {
        match finding {
            Finding::Missing => out.push(failure(
                Check::read,
                Kind::missing,
                signal.name(),
                format!("not readable within {max_wait:?}"),
            )),
            Finding::Intact if late.get(i).copied().unwrap_or(false) => {
                out.push(failure(Check::read, Kind::late, signal.name(), "not readable at the first read"))
            }
            other => out.extend(changed(Check::read, signal, other)),
        }
    }
    out.extend(unexpected(Check::read, judgement));
    out
}

/// A spot check of a write `age` old, against the retention the canary was told.
pub fn spot_failures(
    expected: &[Expected],
    judgement: &Judgement,
    age: Duration,
    lifetimes: &Lifetimes,
) -> Vec<Failure> {
    let mut out = Vec::new();
    for (signal, finding) in expected.iter().zip(&judgement.findings) {
        let expectation = lifetimes.expectation(signal.signal_type, age);
        let kept = lifetimes.retention.of(signal.signal_type);
        match (expectation, finding) {
            (Expectation::Present, Finding::Missing) => out.push(failure(
                Check::spot,
                Kind::expired_early,
                signal.name(),
                format!("gone {age:?} after it was written, before its retention ({kept:?})"),
            )),
            (Expectation::Absent, Finding::Intact | Finding::Changed(_) | Finding::Duplicated(_)) => out
                .push(failure(
                    Check::spot,
                    Kind::expired_late,
                    signal.name(),
                    format!("still readable {age:?} after it was written (retention {kept:?})"),
                )),
            (_, other) => out.extend(changed(Check::spot, signal, other)),
        }
    }
    out.extend(unexpected(Check::spot, judgement));
    out
}

/// The incidents of a write's trace: a healthy write must not have one that asks for analysis
/// (high or critical); a failing one must have one, high or critical, open.
pub fn incident_failures(health: Health, incidents: &[Value]) -> Vec<Failure> {
    let severity = |i: &Value| i["severity"].as_str().unwrap_or_default().to_owned();
    let analysed = |i: &Value| matches!(severity(i).as_str(), "high" | "critical");
    match health {
        Health::Healthy => incidents
            .iter()
            .filter(|i| analysed(i))
            .map(|i| {
                failure(
                    Check::incident,
                    Kind::incorrect,
                    "incident",
                    format!("severity: expected low or medium (no analysis), found {:?}", severity(i)),
                )
            })
            .collect(),
        Health::Failing => match incidents {
            [] => {
                vec![failure(Check::incident, Kind::missing, "incident", "the failing trace has no incident")]
            }
            [incident, ..] => {
                let mut out = Vec::new();
                if !analysed(incident) {
                    out.push(failure(
                        Check::incident,
                        Kind::incorrect,
                        "incident",
                        format!(
                            "severity: expected \"high\" or \"critical\", found {:?}",
                            severity(incident)
                        ),
                    ));
                }
                if incident["status"] != "open" {
                    out.push(failure(
                        Check::incident,
                        Kind::incorrect,
                        "incident",
                        format!("status: expected \"open\", found {}", incident["status"]),
                    ));
                }
                out
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::canary::compare::judge;
    use crate::canary::expected::expected_signals;
    use crate::canary::plan::Write;
    use crate::model::Retention;

    fn written() -> (Vec<Expected>, Vec<Value>) {
        let expected = expected_signals(&Write::plan("c", "s", 1_764_000_000_000_000_001, Health::Healthy));
        let rows = expected.iter().map(|e| e.row.clone()).collect();
        (expected, rows)
    }

    #[test]
    fn a_first_read_names_missing_late_changed_and_unexpected_signals() {
        let (expected, mut rows) = written();
        rows.remove(0);
        rows[0]["payload"]["name"] = json!("tampered");
        rows.push(json!({"id": "x", "signal_type": "log", "payload": {}}));
        let judgement = judge(&expected, &rows);
        let mut late = vec![false; expected.len()];
        late[2] = true;
        let failures = read_failures(&expected, Some(&judgement), &late, Duration::from_secs(60), None);
        let kinds: Vec<(Kind, &str)> = failures.iter().map(|f| (f.kind, f.signal.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (Kind::missing, "span.otlp_grpc.root"),
                (Kind::incorrect, "span.otlp_grpc.client"),
                (Kind::late, "span.otlp_grpc.backend"),
                (Kind::unexpected, "a row"),
            ]
        );
        assert!(
            failures[1].detail.contains("payload.name: expected \"canary client\", found \"tampered\""),
            "{failures:?}"
        );
        let unanswered = read_failures(&expected, None, &late, Duration::from_secs(60), Some("503"));
        assert!(unanswered.iter().all(|f| f.kind == Kind::request_failed));
    }

    #[test]
    fn a_spot_check_expects_what_the_retention_says() {
        let (expected, rows) = written();
        let keep = Some(Duration::from_secs(86_400));
        let lifetimes = Lifetimes {
            retention: Retention { traces: keep, logs: keep, metrics: keep },
            partition_interval: Duration::from_secs(86_400),
            grace: Duration::from_secs(3_600),
        };
        let hour = Duration::from_secs(3_600);
        let gone = judge(&expected, &[]);
        let there = judge(&expected, &rows);
        let kinds = |failures: Vec<Failure>| failures.into_iter().map(|f| f.kind).collect::<Vec<_>>();
        assert_eq!(kinds(spot_failures(&expected, &gone, hour, &lifetimes)), vec![Kind::expired_early; 14]);
        assert!(spot_failures(&expected, &there, hour, &lifetimes).is_empty());
        assert!(spot_failures(&expected, &gone, 30 * hour, &lifetimes).is_empty(), "either is right");
        assert!(spot_failures(&expected, &there, 30 * hour, &lifetimes).is_empty());
        assert_eq!(
            kinds(spot_failures(&expected, &there, 50 * hour, &lifetimes)),
            vec![Kind::expired_late; 14]
        );
        assert!(spot_failures(&expected, &gone, 50 * hour, &lifetimes).is_empty());
    }

    #[test]
    fn incidents_must_not_ask_for_analysis_unless_the_write_failed() {
        let low = json!({"severity": "low", "status": "open"});
        let high = json!({"severity": "high", "status": "open"});
        assert!(incident_failures(Health::Healthy, &[]).is_empty());
        assert!(incident_failures(Health::Healthy, std::slice::from_ref(&low)).is_empty());
        assert_eq!(incident_failures(Health::Healthy, std::slice::from_ref(&high))[0].kind, Kind::incorrect);
        assert!(incident_failures(Health::Failing, std::slice::from_ref(&high)).is_empty());
        assert_eq!(incident_failures(Health::Failing, &[])[0].kind, Kind::missing);
        let resolved = json!({"severity": "critical", "status": "resolved"});
        assert!(incident_failures(Health::Failing, &[resolved])[0].detail.starts_with("status"));
        assert!(incident_failures(Health::Failing, &[low])[0].detail.starts_with("severity"));
    }
}
