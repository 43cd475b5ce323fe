use serde_json::{json, Value};

use std::collections::BTreeMap;

use super::*;

fn signal(signal_type: SignalType, payload: Value) -> Signal {
    let Value::Object(payload) = payload else { panic!("payload must be an object") };
    Signal {
        signal_id: uuid::Uuid::new_v4(),
        signal_type,
        trace_id: "t".to_owned(),
        service_name: "s".to_owned(),
        timestamp: chrono::Utc::now(),
        facts: crate::model::payload::Facts::of_payload(signal_type, &payload),
        payload: crate::model::payload::Payload::from_map(payload),
        shared: None,
        time_unknown: false,
    }
}

fn assess(signal_type: SignalType, payload: Value) -> Assessment {
    Rules::default().assess(&signal(signal_type, payload))
}

use IncidentSeverity::{Critical, High, Low};

#[test]
fn original_rules_error_logs_are_high_and_trigger_analysis() {
    let a = assess(SignalType::Log, json!({"level": "ERROR", "message": "db timeout"}));
    assert_eq!(a, Assessment { severity: High, requests_analysis: true });
    let a = assess(SignalType::Log, json!({"level": "INFO", "message": "ok"}));
    assert_eq!(a, Assessment { severity: Low, requests_analysis: false });
}

#[test]
fn original_rules_latency_metric_at_2000_is_high() {
    let at = assess(SignalType::Metric, json!({"metric_name": "http_latency_ms", "value": 2000}));
    assert_eq!(at.severity, High);
    let below = assess(SignalType::Metric, json!({"metric_name": "http_latency_ms", "value": 1999.9}));
    assert_eq!(below.severity, Low);
    let other = assess(SignalType::Metric, json!({"metric_name": "cpu", "value": 5000}));
    assert_eq!(other.severity, Low);
}

#[test]
fn original_keyword_rule_requests_analysis_without_raising_severity() {
    let a = assess(SignalType::Log, json!({"level": "INFO", "message": "Payment FAILED"}));
    assert_eq!(a, Assessment { severity: Low, requests_analysis: true });
    let a = assess(SignalType::Metric, json!({"metric_name": "critical_path_ms", "value": 1}));
    assert!(a.requests_analysis);
}

#[test]
fn critical_and_fatal_logs_are_critical() {
    for level in ["CRITICAL", "FATAL", "critical"] {
        assert_eq!(
            assess(SignalType::Log, json!({"level": level, "message": "x"})).severity,
            Critical,
            "{level}"
        );
    }
}

#[test]
fn span_status_error_and_exception_events_are_high() {
    assert_eq!(assess(SignalType::Trace, json!({"status": "ERROR"})).severity, High);
    assert_eq!(assess(SignalType::Trace, json!({"status": "OK"})).severity, Low);
    let handled = json!({"status": "OK", "events": [{"name": "exception", "attributes": {}}]});
    assert_eq!(assess(SignalType::Trace, handled).severity, High);
}

#[test]
fn stack_traces_and_exception_attributes_on_logs_are_high() {
    let a = assess(SignalType::Log, json!({"level": "WARNING", "message": "m", "stack_trace": "at x"}));
    assert_eq!(a.severity, High);
    let a = assess(
        SignalType::Log,
        json!({"level": "INFO", "message": "m", "attributes": {"exception.type": "E"}}),
    );
    assert_eq!(a.severity, High);
    let empty = assess(SignalType::Log, json!({"level": "INFO", "message": "m", "stack_trace": ""}));
    assert_eq!(empty.severity, Low);
}

#[test]
fn a_custom_file_replaces_only_what_it_names() {
    let text = r#"
        [signals]
        span_error = "none"
        [signals.log_levels]
        warning = "medium"
        [[signals.metrics]]
        name = "queue.*"
        min_value = 100
        severity = "critical"
        [escalation]
        high_signals_to_critical = 0
        [analysis]
        keywords = []
    "#;
    let rules = Rules::from_toml("rules.toml", text).unwrap();
    assert_eq!(rules.span_error, None);
    assert_eq!(rules.exception, Some(High), "omitted keys keep their default");
    assert_eq!(rules.log_levels, BTreeMap::from([("WARNING".to_owned(), IncidentSeverity::Medium)]));
    assert_eq!(rules.high_signals_to_critical, 0);
    let queue =
        rules.assess(&signal(SignalType::Metric, json!({"metric_name": "queue.depth", "value": 150})));
    assert_eq!(queue, Assessment { severity: Critical, requests_analysis: true });
    let failed = rules.assess(&signal(SignalType::Log, json!({"level": "INFO", "message": "failed"})));
    assert!(!failed.requests_analysis, "keywords turned off");
    assert_eq!(rules.assess(&signal(SignalType::Trace, json!({"status": "ERROR"}))).severity, Low);
}

#[test]
fn a_malformed_file_is_refused_naming_the_line() {
    let text = "[signals]\nspan_error = \"high\"\nexception = \"severe\"\n";
    let error = Rules::from_toml("rules.toml", text).unwrap_err();
    assert_eq!(error.line, Some(3), "{error}");
    assert!(error.to_string().starts_with("rules.toml line 3: "), "{error}");
    assert!(error.message.contains("unknown severity"), "{error}");

    let typo = Rules::from_toml("rules.toml", "[signal]\nspan_error = \"high\"\n").unwrap_err();
    assert_eq!(typo.line, Some(1), "{typo}");
    let syntax = Rules::from_toml("rules.toml", "[signals]\nspan_error = \n").unwrap_err();
    assert_eq!(syntax.line, Some(2), "{syntax}");
}

#[test]
fn globs_match_like_shell_wildcards() {
    assert!(glob_matches("*latency*", "http_latency_ms"));
    assert!(glob_matches("*latency*", "latency"));
    assert!(glob_matches("queue.*", "queue.depth"));
    assert!(!glob_matches("queue.*", "myqueue.depth"));
    assert!(glob_matches("a*b*c", "a-b-c"));
    assert!(!glob_matches("a*b*c", "a-c"));
    assert!(glob_matches("exact", "exact"));
    assert!(!glob_matches("ab*ba", "aba"));
}
