//! How a signal is judged by the severity rules ([`Rules`], defined with their file format in
//! `model::rules`): the severity it gives its incident, and whether it asks for an analysis.

pub use crate::model::rules::{MetricRule, Rules, RulesError};
use crate::model::{IncidentSeverity, Signal, SignalType};

impl Rules {
    /// What one signal says about its incident, from the facts its mapping took
    /// ([`crate::model::payload::Facts`]) and, for the keywords, its payload's text.
    pub fn assess(&self, signal: &Signal) -> Assessment {
        let facts = &signal.facts;
        let mut severity = IncidentSeverity::Low;
        let mut raise = |rule: Option<IncidentSeverity>| {
            if let Some(rule) = rule {
                severity = severity.max(rule);
            }
        };
        match signal.signal_type {
            SignalType::Log => {
                if let Some(level) = &facts.level {
                    raise(self.log_levels.get(&level.to_ascii_uppercase()).copied());
                }
                if facts.exception {
                    raise(self.exception);
                }
            }
            SignalType::Trace => {
                if facts.failed {
                    raise(self.span_error);
                }
                if facts.exception {
                    raise(self.exception);
                }
            }
            SignalType::Metric => {
                let name = facts.text.as_deref().unwrap_or_default();
                if let Some(value) = facts.value {
                    for rule in &self.metrics {
                        if value >= rule.min_value && glob_matches(&rule.name, name) {
                            raise(Some(rule.severity));
                        }
                    }
                }
            }
        }
        // The payload's text as stored, and the resource and scope it shares with its export
        // (the text the original searched held them all).
        let keyword = !self.analysis_keywords.is_empty() && {
            let text = signal.payload.as_str().to_lowercase();
            let shared = signal.shared.as_ref().map(|s| s.lowercase_text());
            self.analysis_keywords
                .iter()
                .any(|word| text.contains(word.as_str()) || shared.is_some_and(|s| s.contains(word.as_str())))
        };
        Assessment { severity, requests_analysis: severity >= IncidentSeverity::High || keyword }
    }
}

/// What a signal means for its incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assessment {
    pub severity: IncidentSeverity,
    /// The signal alone asks for an analysis (HIGH or above, or a keyword matched).
    pub requests_analysis: bool,
}

/// `*` matches any run of characters (including none); everything else matches itself.
fn glob_matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first)
        || !name[first.len()..].ends_with(last)
        || name.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests;
