//! How incidents and problems escalate, stated once. The batch write applies these rules in
//! SQL (`store/sql/write_batch.sql`), next to the rows, so concurrent batches and the analysis
//! worker never overwrite each other; this type is what it is given.
//!
//! - An incident's severity only rises: it is the highest severity of its signals so far.
//! - An incident with `critical_after_high` signals of severity HIGH or above becomes
//!   CRITICAL (never, when 0).
//! - An incident asks for an analysis when one of its new signals requests one and it has not
//!   asked within `analysis_window` (the Redis lock's TTL).
//! - With `problem_window` set, a problem (errors of one fingerprint across traces) asks for
//!   one analysis per window, for the trace that claimed it; a trace whose errors all belong to
//!   problems asks only through them. Without it, every incident asks for itself.

use std::time::Duration;

use super::Triage;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Escalation {
    pub critical_after_high: u64,
    pub analysis_window: Duration,
    pub problem_window: Option<Duration>,
}

impl Triage {
    pub fn escalation(&self) -> Escalation {
        Escalation {
            critical_after_high: self.rules.high_signals_to_critical,
            analysis_window: self.analysis_window,
            problem_window: self.problem_window,
        }
    }
}
