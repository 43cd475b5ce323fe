//! The totals of a run and the one-screen report `--once` and `--cycles` print: what was
//! written, what was checked, every kind of failure, and the first failures in full.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::metrics::{Check, Kind};

/// The first failures are kept whole for the report; the rest are counted.
const KEPT_FAILURES: usize = 10;

/// Everything the report says, added up as checks finish.
#[derive(Debug, Default)]
pub struct Tally {
    pub cycles: u64,
    /// Signals acknowledged, by transport.
    pub written: BTreeMap<&'static str, u64>,
    /// Requests refused, by transport.
    pub refused: BTreeMap<&'static str, u64>,
    pub checks: BTreeMap<&'static str, u64>,
    pub failures: BTreeMap<(&'static str, &'static str), u64>,
    /// The first failures, as logged.
    pub failure_lines: Vec<String>,
    /// Fastest and slowest delay from a write's acknowledgement to the read that found it.
    pub readable: Option<(Duration, Duration)>,
}

pub fn check_name(check: Check) -> &'static str {
    match check {
        Check::read => "read",
        Check::incident => "incident",
        Check::spot => "spot",
    }
}

pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::missing => "missing",
        Kind::late => "late",
        Kind::incorrect => "incorrect",
        Kind::duplicate => "duplicate",
        Kind::unexpected => "unexpected",
        Kind::expired_early => "expired_early",
        Kind::expired_late => "expired_late",
        Kind::request_failed => "request_failed",
    }
}

impl Tally {
    pub fn wrote(&mut self, transport: &'static str, signals: u64) {
        *self.written.entry(transport).or_default() += signals;
    }

    pub fn refused(&mut self, transport: &'static str, line: String) {
        *self.refused.entry(transport).or_default() += 1;
        self.keep(line);
    }

    pub fn checked(&mut self, check: Check, n: u64) {
        *self.checks.entry(check_name(check)).or_default() += n;
    }

    pub fn failed(&mut self, check: Check, kind: Kind, line: String) {
        *self.failures.entry((check_name(check), kind_name(kind))).or_default() += 1;
        self.keep(line);
    }

    pub fn readable_after(&mut self, delay: Duration) {
        self.readable = Some(match self.readable {
            None => (delay, delay),
            Some((min, max)) => (min.min(delay), max.max(delay)),
        });
    }

    fn keep(&mut self, line: String) {
        if self.failure_lines.len() < KEPT_FAILURES {
            self.failure_lines.push(line);
        }
    }

    /// Every check passed and every write was acknowledged.
    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.refused.is_empty()
    }

    pub fn to_json(&self, id: &str, api: &str) -> Value {
        json!({
            "canary_id": id,
            "api_endpoint": api,
            "passed": self.passed(),
            "cycles": self.cycles,
            "written": self.written,
            "refused": self.refused,
            "checks": self.checks,
            "failures": self.failures.iter().map(|((check, kind), n)| json!({"check": check, "kind": kind, "count": n})).collect::<Vec<_>>(),
            "first_failures": self.failure_lines,
            "readable_seconds": self.readable.map(|(min, max)| json!({"min": min.as_secs_f64(), "max": max.as_secs_f64()})),
        })
    }

    pub fn to_text(&self, id: &str, api: &str) -> String {
        let sum = |map: &BTreeMap<&'static str, u64>| map.values().sum::<u64>();
        let list = |map: &BTreeMap<&'static str, u64>| {
            map.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
        };
        let mut lines = vec![format!(
            "prodsentinel canary {} (id {id}) against {api}: {} cycle(s)",
            env!("CARGO_PKG_VERSION"),
            self.cycles
        )];
        lines.push(format!(
            "written:   {} signals acknowledged ({})",
            sum(&self.written),
            list(&self.written)
        ));
        if !self.refused.is_empty() {
            lines.push(format!("refused:   {} requests ({})", sum(&self.refused), list(&self.refused)));
        }
        lines.push(format!("checked:   {}", list(&self.checks)));
        if let Some((min, max)) = self.readable {
            lines.push(format!("readable:  after {:.3} s to {:.3} s", min.as_secs_f64(), max.as_secs_f64()));
        }
        if self.failures.is_empty() {
            lines.push("failures:  none".into());
        } else {
            let failures: Vec<String> =
                self.failures.iter().map(|((check, kind), n)| format!("{check}/{kind} {n}")).collect();
            lines.push(format!("failures:  {}", failures.join(", ")));
            lines.extend(self.failure_lines.iter().map(|line| format!("  {line}")));
        }
        lines.push(if self.passed() { "PASS".into() } else { "FAIL".into() });
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_passes_only_without_failures_or_refusals() {
        let mut tally = Tally { cycles: 1, ..Tally::default() };
        tally.wrote("legacy", 3);
        tally.checked(Check::read, 3);
        assert!(tally.passed());
        assert!(tally.to_text("c", "http://x").ends_with("PASS"));
        tally.refused("otlp_grpc", "refused".into());
        assert!(!tally.passed());
        let mut failing = Tally::default();
        for n in 0..20 {
            failing.failed(Check::read, Kind::missing, format!("line {n}"));
        }
        assert_eq!(failing.failure_lines.len(), KEPT_FAILURES, "the report stays one screen");
        assert_eq!(failing.to_json("c", "x")["failures"][0]["count"], 20);
        assert!(failing.to_text("c", "x").contains("read/missing 20"));
    }
}
