//! A trace as read back against what was written: each expected signal found intact, missing,
//! changed (with the fields that differ) or found more than once, and rows nobody wrote.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde_json::Value;

use super::expected::Expected;
use super::plan::MARKER;

/// One field that differs.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// `payload.attributes."canary.int"`.
    pub path: String,
    pub expected: Option<Value>,
    pub found: Option<Value>,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<Value>| v.as_ref().map_or_else(|| "absent".to_owned(), Value::to_string);
        write!(f, "{}: expected {}, found {}", self.path, show(&self.expected), show(&self.found))
    }
}

/// Every difference between `expected` and `found`, depth first, at most `limit` of them.
pub fn differences(expected: &Value, found: &Value, limit: usize) -> Vec<Difference> {
    let mut out = Vec::new();
    walk(String::new(), Some(expected), Some(found), &mut out, limit);
    out
}

fn child(path: &str, key: &str) -> String {
    let key = if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

fn walk(
    path: String,
    expected: Option<&Value>,
    found: Option<&Value>,
    out: &mut Vec<Difference>,
    limit: usize,
) {
    if out.len() >= limit {
        return;
    }
    match (expected, found) {
        (Some(Value::Object(e)), Some(Value::Object(f))) => {
            let mut keys: Vec<&String> = e.keys().chain(f.keys().filter(|k| !e.contains_key(*k))).collect();
            keys.sort();
            for key in keys {
                walk(child(&path, key), e.get(key), f.get(key), out, limit);
            }
        }
        (Some(Value::Array(e)), Some(Value::Array(f))) if e.len() == f.len() => {
            for (i, (e, f)) in e.iter().zip(f).enumerate() {
                walk(format!("{path}[{i}]"), Some(e), Some(f), out, limit);
            }
        }
        (e, f) if e == f => {}
        (e, f) => out.push(Difference { path, expected: e.cloned(), found: f.cloned() }),
    }
}

/// What became of one expected signal.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    Intact,
    Missing,
    /// Found (by its id, or else by its marker), with these differences.
    Changed(Vec<Difference>),
    /// Found this many times.
    Duplicated(usize),
}

/// A read judged: a finding per expected signal (in their order), and the rows that match none.
#[derive(Debug, Clone, Default)]
pub struct Judgement {
    pub findings: Vec<Finding>,
    pub unexpected: Vec<Value>,
}

/// At most this many differences are reported per signal.
const MAX_DIFFERENCES: usize = 8;

/// Pairs `rows` (a trace as the API answered it) with `expected`: by id, or, for a signal whose
/// id is nowhere, by its marker (so a signal stored under another id reads as changed, naming
/// the id, rather than as missing plus unexpected).
pub fn judge(expected: &[Expected], rows: &[Value]) -> Judgement {
    let mut by_id: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        by_id.entry(row["id"].as_str().unwrap_or_default()).or_default().push(i);
    }
    let mut used: HashSet<usize> = HashSet::new();
    let mut findings = Vec::with_capacity(expected.len());
    let mut unpaired = Vec::new();
    for (n, signal) in expected.iter().enumerate() {
        let id = signal.id.to_string();
        let finding = match by_id.get(id.as_str()).map(Vec::as_slice) {
            None | Some([]) => {
                unpaired.push(n);
                Finding::Missing
            }
            Some([one]) => {
                used.insert(*one);
                changed_or_intact(&signal.row, &rows[*one])
            }
            Some(many) => {
                used.extend(many.iter().copied());
                Finding::Duplicated(many.len())
            }
        };
        findings.push(finding);
    }
    for n in unpaired {
        let signal = &expected[n];
        let same_marker = rows.iter().enumerate().find(|(i, row)| {
            !used.contains(i)
                && row["signal_type"] == signal.row["signal_type"]
                && row["payload"]["attributes"][MARKER].as_str() == Some(signal.marker.as_str())
        });
        if let Some((i, row)) = same_marker {
            used.insert(i);
            findings[n] = changed_or_intact(&signal.row, row);
        }
    }
    let unexpected =
        rows.iter().enumerate().filter(|(i, _)| !used.contains(i)).map(|(_, r)| r.clone()).collect();
    Judgement { findings, unexpected }
}

fn changed_or_intact(expected: &Value, found: &Value) -> Finding {
    match differences(expected, found, MAX_DIFFERENCES) {
        diffs if diffs.is_empty() => Finding::Intact,
        diffs => Finding::Changed(diffs),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::canary::expected::expected_signals;
    use crate::canary::plan::{Health, Write};

    fn rows(write: &Write) -> (Vec<Expected>, Vec<Value>) {
        let expected = expected_signals(write);
        let rows = expected.iter().map(|e| e.row.clone()).collect();
        (expected, rows)
    }

    #[test]
    fn differences_name_the_path_and_both_values() {
        let diffs = differences(
            &json!({"payload": {"attributes": {"canary.int": 42, "a": [1, 2]}, "name": "x"}}),
            &json!({"payload": {"attributes": {"canary.int": 43, "a": [1, 3]}, "extra": true, "name": "x"}}),
            10,
        );
        let shown: Vec<String> = diffs.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "payload.attributes.a[1]: expected 2, found 3",
                "payload.attributes.\"canary.int\": expected 42, found 43",
                "payload.extra: expected absent, found true",
            ]
        );
        assert_eq!(differences(&json!(1.0), &json!(1), 10).len(), 1, "a float is not an integer");
    }

    #[test]
    fn a_trace_read_back_whole_is_intact_whatever_the_row_order() {
        let (expected, mut found) = rows(&Write::plan("c", "s", 1_764_000_000_000_000_001, Health::Healthy));
        found.reverse();
        let judgement = judge(&expected, &found);
        assert!(judgement.findings.iter().all(|f| *f == Finding::Intact), "{judgement:?}");
        assert!(judgement.unexpected.is_empty());
    }

    #[test]
    fn missing_changed_duplicated_and_unexpected_rows_are_each_told_apart() {
        let (expected, mut found) = rows(&Write::plan("c", "s", 1_764_000_000_000_000_001, Health::Healthy));
        found.remove(0);
        found[0]["payload"]["name"] = json!("tampered");
        let copy = found[1].clone();
        found.push(copy);
        // A row whose id changed: paired by its marker.
        found[2]["id"] = json!("00000000-0000-4000-8000-000000000000");
        found.push(json!({"id": "x", "signal_type": "log", "payload": {}}));
        let judgement = judge(&expected, &found);
        assert_eq!(judgement.findings[0], Finding::Missing);
        let Finding::Changed(diffs) = &judgement.findings[1] else { panic!("{:?}", judgement.findings[1]) };
        assert_eq!(diffs[0].path, "payload.name");
        assert_eq!(judgement.findings[2], Finding::Duplicated(2));
        let Finding::Changed(diffs) = &judgement.findings[3] else { panic!("{:?}", judgement.findings[3]) };
        assert_eq!(diffs[0].path, "id");
        assert_eq!(judgement.unexpected.len(), 1);
    }
}
