//! The severity rules as data, from a TOML file (`RULES_FILE`) or the built-in defaults, which
//! are the original backend's rules (docs/contracts.md §5) plus ours (how a signal is judged by
//! them is `incidents::rules`):
//!
//! ```toml
//! [signals]
//! span_error = "high"          # a span with status ERROR
//! exception = "high"           # a span exception event, a log with stack_trace or exception.*
//! [signals.log_levels]         # log level -> severity
//! ERROR = "high"
//! CRITICAL = "critical"
//! FATAL = "critical"
//! [[signals.metrics]]          # metric thresholds: name glob (`*` wildcard) and minimum value
//! name = "*latency*"
//! min_value = 2000
//! severity = "high"
//! [escalation]
//! high_signals_to_critical = 5 # this many HIGH signals in one incident make it CRITICAL (0: never)
//! [analysis]
//! keywords = ["fail", "critical"]  # payload text containing one also requests analysis
//! ```
//!
//! Every key is optional and takes its default when omitted; `metrics = []` or `keywords = []`
//! turn those rules off. Unknown keys are errors, so a typo never silently disables a rule.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::IncidentSeverity;

/// A metric threshold.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricRule {
    /// Glob over the metric name; `*` matches any run of characters.
    pub name: String,
    /// The rule matches when the point's value is at least this.
    pub min_value: f64,
    #[serde(deserialize_with = "severity")]
    pub severity: IncidentSeverity,
}

/// All severity and analysis rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Upper-case log level -> severity.
    pub log_levels: BTreeMap<String, IncidentSeverity>,
    pub span_error: Option<IncidentSeverity>,
    pub exception: Option<IncidentSeverity>,
    pub metrics: Vec<MetricRule>,
    /// HIGH signals in one incident that make it CRITICAL; 0 disables.
    pub high_signals_to_critical: u64,
    /// Lower-case words whose presence in a payload requests analysis.
    pub analysis_keywords: Vec<String>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            log_levels: BTreeMap::from([
                ("ERROR".to_owned(), IncidentSeverity::High),
                ("CRITICAL".to_owned(), IncidentSeverity::Critical),
                ("FATAL".to_owned(), IncidentSeverity::Critical),
            ]),
            span_error: Some(IncidentSeverity::High),
            exception: Some(IncidentSeverity::High),
            metrics: vec![MetricRule {
                name: "*latency*".to_owned(),
                min_value: 2000.0,
                severity: IncidentSeverity::High,
            }],
            high_signals_to_critical: 5,
            analysis_keywords: vec!["fail".to_owned(), "critical".to_owned()],
        }
    }
}

/// A rules file that cannot be used, with the line of the problem when known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct RulesError {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    signals: SignalsSection,
    #[serde(default)]
    escalation: EscalationSection,
    #[serde(default)]
    analysis: AnalysisSection,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SignalsSection {
    #[serde(default, deserialize_with = "optional_severity")]
    span_error: Option<Option<IncidentSeverity>>,
    #[serde(default, deserialize_with = "optional_severity")]
    exception: Option<Option<IncidentSeverity>>,
    log_levels: Option<BTreeMap<String, SeverityName>>,
    metrics: Option<Vec<MetricRule>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EscalationSection {
    high_signals_to_critical: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AnalysisSection {
    keywords: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct SeverityName(#[serde(deserialize_with = "severity")] IncidentSeverity);

fn severity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<IncidentSeverity, D::Error> {
    let text = String::deserialize(d)?;
    IncidentSeverity::from_api_value(&text).ok_or_else(|| {
        serde::de::Error::custom(format!("unknown severity {text:?}: use low, medium, high or critical"))
    })
}

/// `"none"` turns a rule off; a severity name sets it.
fn optional_severity<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<IncidentSeverity>>, D::Error> {
    let text = String::deserialize(d)?;
    if text.eq_ignore_ascii_case("none") {
        return Ok(Some(None));
    }
    IncidentSeverity::from_api_value(&text).map(|s| Some(Some(s))).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unknown severity {text:?}: use low, medium, high, critical or none"
        ))
    })
}

impl Rules {
    /// Parses a rules file's text; `path` names it in errors.
    pub fn from_toml(path: &str, text: &str) -> Result<Rules, RulesError> {
        let file: RulesFile = toml::from_str(text).map_err(|why| RulesError {
            path: path.to_owned(),
            line: why.span().map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1),
            message: why.message().trim().to_owned(),
        })?;
        let defaults = Rules::default();
        Ok(Rules {
            log_levels: file
                .signals
                .log_levels
                .map(|levels| {
                    levels.into_iter().map(|(level, s)| (level.to_ascii_uppercase(), s.0)).collect()
                })
                .unwrap_or(defaults.log_levels),
            span_error: file.signals.span_error.unwrap_or(defaults.span_error),
            exception: file.signals.exception.unwrap_or(defaults.exception),
            metrics: file.signals.metrics.unwrap_or(defaults.metrics),
            high_signals_to_critical: file
                .escalation
                .high_signals_to_critical
                .unwrap_or(defaults.high_signals_to_critical),
            analysis_keywords: file
                .analysis
                .keywords
                .map(|words| words.into_iter().map(|w| w.to_lowercase()).collect())
                .unwrap_or(defaults.analysis_keywords),
        })
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &str) -> Result<Rules, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|why| RulesError {
            path: path.to_owned(),
            line: None,
            message: why.to_string(),
        })?;
        Rules::from_toml(path, &text)
    }
}
