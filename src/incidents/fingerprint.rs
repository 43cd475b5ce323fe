//! Error fingerprints (issue 8): one fault's many traces share a fingerprint, so they can be
//! grouped into one problem and analysed once. Pure.
//!
//! The fingerprint of an error signal is its service plus, in order of preference:
//! 1. the exception type, when the signal carries one (a log's `exception.type` attribute, a
//!    span's `exception` event); a span and a log of the same fault therefore agree;
//! 2. for a span that failed (or recorded an exception without a type): its name;
//! 3. for a log: its message, normalised ([`normalise_message`]);
//! 4. for a metric the rules raised: its name.
//!
//! Signals that are not errors (`Facts::is_error`: INFO logs, OK spans without exceptions,
//! metrics no rule raised) have no fingerprint.

use sha2::{Digest, Sha256};

use crate::model::{Signal, SignalType};

/// What groups a fault's signals: a stable key and a readable title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// 32 lower-case hex characters (the first half of a SHA-256).
    pub key: String,
    /// `checkout: PaymentDeclinedError`, `checkout: span POST /pay failed`, …
    pub title: String,
}

/// The longest message part kept in a title.
const TITLE_CHARS: usize = 160;

/// The fingerprint of `signal` if it is an error signal. `rule_matched` says whether the rules
/// raised it to HIGH or above (what makes a metric an error).
pub fn fingerprint(signal: &Signal, rule_matched: bool) -> Option<Fingerprint> {
    let facts = &signal.facts;
    let text = facts.text.as_deref().unwrap_or_default();
    let (kind, detail) = match signal.signal_type {
        SignalType::Metric if rule_matched => ("metric", text.to_owned()),
        kind if !facts.is_error(kind) => return None,
        kind => match (&facts.exception_type, kind) {
            (Some(exception), _) => ("exception", exception.clone()),
            (None, SignalType::Log) => ("log", normalise_message(text)),
            (None, _) => ("span", format!("{text} ERROR")),
        },
    };
    let service = &signal.service_name;
    let digest = Sha256::digest(format!("{service}\u{1f}{kind}\u{1f}{detail}").as_bytes());
    let key = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let shown: String = detail.chars().take(TITLE_CHARS).collect();
    let title = match kind {
        "span" => format!("{service}: span {} failed", shown.trim_end_matches(" ERROR")),
        "metric" => format!("{service}: metric {shown}"),
        _ => format!("{service}: {shown}"),
    };
    Some(Fingerprint { key, title })
}

/// A log message with what varies between occurrences of one fault collapsed to placeholders:
/// UUIDs `<uuid>`, timestamps `<ts>`, quoted values `<str>`, paths `<path>`, hex ids (`0x…`, or
/// 8+ hex characters with a digit) `<hex>`, e-mail addresses `<email>`, numbers `<n>`.
/// Whitespace runs become one space.
pub fn normalise_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let chars: Vec<char> = message.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        // A quote opens a value only where a value can start (not the apostrophe in "can't").
        let value_start = out.is_empty() || out.ends_with([' ', '(', '=', ':', '[']);
        if (c == '"' || c == '\'' || c == '`') && value_start {
            if let Some(end) = chars[i + 1..].iter().position(|d| *d == c) {
                out.push_str("<str>");
                i += end + 2;
                continue;
            }
        }
        if c.is_whitespace() {
            if !out.ends_with(' ') {
                out.push(' ');
            }
            i += 1;
            continue;
        }
        if c == '/' && (out.is_empty() || out.ends_with(' ') || out.ends_with('=') || out.ends_with(':')) {
            let end = token_end(&chars, i);
            if chars[i + 1..end].contains(&'/') {
                out.push_str("<path>");
                i = end;
                continue;
            }
        }
        if c.is_alphanumeric() || c == '_' || c == '-' || c == '.' || c == '@' || c == '+' || c == ':' {
            let end = token_end(&chars, i);
            let token: String = chars[i..end].iter().collect();
            out.push_str(&normalise_token(&token));
            i = end;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out.trim().to_owned()
}

/// Where the word starting at `start` ends (whitespace or punctuation that ends words).
fn token_end(chars: &[char], start: usize) -> usize {
    let mut end = start + 1;
    while end < chars.len()
        && !chars[end].is_whitespace()
        && !matches!(chars[end], ',' | ';' | '(' | ')' | '[' | ']' | '{' | '}' | '"' | '\'' | '`' | '=')
    {
        end += 1;
    }
    // A sentence's full stop or colon is not part of the word.
    while end > start + 1 && matches!(chars[end - 1], '.' | ':') {
        end -= 1;
    }
    end
}

fn normalise_token(token: &str) -> String {
    if is_uuid(token) {
        return "<uuid>".to_owned();
    }
    if is_timestamp(token) {
        return "<ts>".to_owned();
    }
    if token.contains('@') && token.contains('.') && !token.starts_with('@') {
        return "<email>".to_owned();
    }
    let hex_body = token.strip_prefix("0x").or_else(|| token.strip_prefix("0X"));
    if hex_body.is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit())) {
        return "<hex>".to_owned();
    }
    if token.len() >= 8
        && token.chars().all(|c| c.is_ascii_hexdigit())
        && token.chars().any(|c| c.is_ascii_digit())
    {
        return "<hex>".to_owned();
    }
    // Numbers inside a word (order-42, 500ms, 10.0.0.1:5432): each digit run becomes <n>.
    let mut out = String::with_capacity(token.len());
    let mut in_number = false;
    for c in token.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push_str("<n>");
                in_number = true;
            }
        } else if in_number && c == '.' {
            // a decimal point or an address separator stays inside the number
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

fn is_uuid(token: &str) -> bool {
    let parts: Vec<&str> = token.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12].iter().zip(&parts).all(|(len, part)| part.len() == *len)
        && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_timestamp(token: &str) -> bool {
    // 2024-05-01T10:20:30(.123)(Z|+00:00), or a bare date 2024-05-01.
    let bytes = token.as_bytes();
    let date = bytes.len() >= 10
        && bytes[..4].iter().all(u8::is_ascii_digit)
        && bytes[4] == b'-'
        && bytes[5..7].iter().all(u8::is_ascii_digit)
        && bytes[7] == b'-'
        && bytes[8..10].iter().all(u8::is_ascii_digit);
    date && (bytes.len() == 10 || matches!(bytes[10], b'T' | b't'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use uuid::Uuid;

    fn signal(signal_type: SignalType, service: &str, payload: Value) -> Signal {
        Signal {
            signal_id: Uuid::new_v4(),
            signal_type,
            trace_id: Uuid::new_v4().simple().to_string(),
            service_name: service.to_owned(),
            timestamp: chrono::Utc::now(),
            facts: crate::model::payload::Facts::of_payload(signal_type, payload.as_object().unwrap()),
            payload: crate::model::payload::Payload::from_map(payload.as_object().cloned().unwrap()),
            shared: None,
            time_unknown: false,
        }
    }

    fn log(service: &str, level: &str, message: &str) -> Signal {
        signal(SignalType::Log, service, json!({"level": level, "message": message, "attributes": {}}))
    }

    fn key(signal: &Signal) -> String {
        fingerprint(signal, false).expect("an error signal").key
    }

    #[test]
    fn messages_that_differ_only_in_ids_numbers_and_times_fingerprint_the_same() {
        let pairs = [
            (
                "Payment declined for order 10482 (card ending 4242), retry 3 of 5",
                "Payment declined for order 99 (card ending 0005), retry 1 of 5",
            ),
            (
                "User 6f1c2b9e-3a4d-4e5f-8a7b-9c0d1e2f3a4b not found in tenant 'acme'",
                "User 0b1c2d3e-4f5a-4b6c-8d7e-0f1a2b3c4d5e not found in tenant 'globex'",
            ),
            (
                "timeout after 5003ms calling 10.0.3.17:5432 at 2024-05-01T10:20:30.123Z",
                "timeout after 12ms calling 10.0.9.2:5432 at 2026-11-30T04:00:00Z",
            ),
            (
                "cannot open /var/lib/app/cache/7f3a9c2e.bin: permission denied",
                "cannot open /tmp/other/3c9f0a1b.bin: permission denied",
            ),
            ("request 0x7ffd3a2c failed: \"connection reset\"", "request 0x1 failed: \"broken pipe\""),
            (
                "trace 5b8efff798038103d269b633813fc60c aborted",
                "trace aa8efff798038103d269b633813fc60d aborted",
            ),
            ("mail to alice@example.com bounced", "mail to bob.smith@corp.example.org bounced"),
            ("can't read key 'user:42'", "can't read key 'session:9'"),
        ];
        for (a, b) in pairs {
            assert_eq!(normalise_message(a), normalise_message(b), "{a:?} vs {b:?}");
            assert_eq!(key(&log("checkout", "ERROR", a)), key(&log("checkout", "ERROR", b)));
        }
        assert_eq!(
            normalise_message("Payment declined for order 10482 (card ending 4242), retry 3 of 5"),
            "Payment declined for order <n> (card ending <n>), retry <n> of <n>"
        );
        assert_eq!(normalise_message("can't read key 'user:42'"), "can't read key <str>");
        assert_eq!(
            normalise_message("timeout after 5003ms calling 10.0.3.17:5432 at 2024-05-01T10:20:30.123Z"),
            "timeout after <n>ms calling <n>:<n> at <ts>"
        );
    }

    #[test]
    fn different_messages_services_or_exception_types_do_not() {
        let declined = log("checkout", "ERROR", "Payment declined for order 1");
        assert_ne!(key(&declined), key(&log("checkout", "ERROR", "Inventory reserve failed for order 1")));
        assert_ne!(key(&declined), key(&log("billing", "ERROR", "Payment declined for order 1")));
        let with_exception = |service: &str, exception: &str| {
            signal(
                SignalType::Log,
                service,
                json!({"level": "ERROR", "message": "boom 1", "attributes": {"exception.type": exception}}),
            )
        };
        assert_ne!(
            key(&with_exception("checkout", "TimeoutError")),
            key(&with_exception("checkout", "KeyError"))
        );
        assert_ne!(
            key(&with_exception("checkout", "TimeoutError")),
            key(&with_exception("billing", "TimeoutError"))
        );
        // The exception type wins over the message: different messages, one fault.
        let other_message = signal(
            SignalType::Log,
            "checkout",
            json!({"level": "ERROR", "message": "totally different", "attributes": {"exception.type": "TimeoutError"}}),
        );
        assert_eq!(key(&with_exception("checkout", "TimeoutError")), key(&other_message));
    }

    #[test]
    fn a_span_and_a_log_of_one_fault_agree_through_the_exception_type() {
        let span = signal(
            SignalType::Trace,
            "payment",
            json!({"name": "charge", "status": "ERROR", "events": [
                {"name": "exception", "attributes": {"exception.type": "CardDeclined", "exception.message": "card 4242"}}
            ]}),
        );
        let log = signal(
            SignalType::Log,
            "payment",
            json!({"level": "ERROR", "message": "card 4242 declined", "attributes": {"exception.type": "CardDeclined"}}),
        );
        let (span_print, log_print) = (fingerprint(&span, false).unwrap(), fingerprint(&log, false).unwrap());
        assert_eq!(span_print, log_print);
        assert_eq!(span_print.title, "payment: CardDeclined");
        assert_eq!(span_print.key.len(), 32);
    }

    #[test]
    fn spans_without_exception_use_name_and_status_and_non_errors_have_none() {
        let failed = |name: &str| {
            signal(SignalType::Trace, "gateway", json!({"name": name, "status": "ERROR", "events": []}))
        };
        let print = fingerprint(&failed("POST /checkout"), false).unwrap();
        assert_eq!(print.title, "gateway: span POST /checkout failed");
        assert_ne!(print.key, fingerprint(&failed("GET /cart"), false).unwrap().key);
        let ok = signal(SignalType::Trace, "gateway", json!({"name": "x", "status": "OK", "events": []}));
        assert_eq!(fingerprint(&ok, false), None);
        assert_eq!(fingerprint(&log("gateway", "INFO", "fine"), false), None);
        assert_eq!(fingerprint(&log("gateway", "WARNING", "hmm"), false), None);
        let metric =
            signal(SignalType::Metric, "api", json!({"metric_name": "http_latency_ms", "value": 2500}));
        assert_eq!(fingerprint(&metric, false), None, "a metric is an error only when a rule matched it");
        assert_eq!(fingerprint(&metric, true).unwrap().title, "api: metric http_latency_ms");
    }
}
