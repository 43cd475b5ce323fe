//! The Celery 5.4 task message for `analyze_trace(trace_id)`, built by one pure function.
//!
//! A malformed envelope can crash the Python worker or loop forever as a poison message
//! (docs/contracts.md §2), so the shape is exactly the one Celery itself writes (protocol 2,
//! JSON serializer, body `[args, kwargs, embed]` in base64), checked against a golden file and
//! against a real worker in the integration tests.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

/// The Celery task name the analysis worker registers.
pub const TASK_NAME: &str = "analyze_trace";

/// Everything that varies between two `analyze_trace` messages.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMessage<'a> {
    pub trace_id: &'a str,
    /// `headers.id` (also `root_id` and `correlation_id`): the Celery task id.
    pub task_id: Uuid,
    /// `properties.delivery_tag`: unique per message.
    pub delivery_tag: Uuid,
    /// Earliest execution time; `None` runs at once.
    pub eta: Option<DateTime<Utc>>,
    /// The list the worker consumes (`celery` by default).
    pub queue: &'a str,
    /// `headers.origin`, the sender's node name, for worker logs.
    pub origin: &'a str,
}

/// The JSON envelope to `LPUSH` onto the queue list.
pub fn analyze_trace_envelope(message: &TaskMessage) -> String {
    let body =
        json!([[message.trace_id], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]);
    let body = base64::engine::general_purpose::STANDARD.encode(body.to_string());
    let task_id = message.task_id.to_string();
    // Python's isoformat() of an aware UTC datetime, as Celery writes it.
    let eta = message.eta.map(|eta| eta.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string());
    json!({
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": TASK_NAME,
            "id": task_id,
            "shadow": null,
            "eta": eta,
            "expires": null,
            "group": null,
            "group_index": null,
            "retries": 0,
            "timelimit": [null, null],
            "root_id": task_id,
            "parent_id": null,
            "argsrepr": format!("[{}]", python_repr(message.trace_id)),
            "kwargsrepr": "{}",
            "origin": message.origin,
            "ignore_result": false,
            "replaced_task_nesting": 0,
            "stamped_headers": null,
            "stamps": {}
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": Uuid::nil().to_string(),
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": message.queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": message.delivery_tag.to_string()
        }
    })
    .to_string()
}

/// Python's `repr()` of a string, for the informational `argsrepr` header.
fn python_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') { '"' } else { '\'' };
    let mut repr = String::with_capacity(text.len() + 2);
    repr.push(quote);
    for c in text.chars() {
        match c {
            '\\' => repr.push_str("\\\\"),
            '\n' => repr.push_str("\\n"),
            '\r' => repr.push_str("\\r"),
            '\t' => repr.push_str("\\t"),
            c if c == quote => {
                repr.push('\\');
                repr.push(c);
            }
            c if c.is_control() => repr.push_str(&format!("\\x{:02x}", c as u32)),
            c => repr.push(c),
        }
    }
    repr.push(quote);
    repr
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn message(trace_id: &str) -> TaskMessage<'_> {
        TaskMessage {
            trace_id,
            task_id: Uuid::parse_str("7757229f-2efa-4e71-9111-177c07a8440d").unwrap(),
            delivery_tag: Uuid::parse_str("039ccccb-a7a2-400b-aeb4-64bbbd32fd29").unwrap(),
            eta: Some(
                DateTime::parse_from_rfc3339("2026-11-29T23:33:41.167029Z").unwrap().with_timezone(&Utc),
            ),
            queue: "celery",
            origin: "prodsentinel@host",
        }
    }

    #[test]
    fn envelope_matches_the_golden_file() {
        let golden = include_str!("../../tests/fixtures/celery/analyze_trace_envelope.json");
        let golden: Value = serde_json::from_str(golden).unwrap();
        let ours: Value = serde_json::from_str(&analyze_trace_envelope(&message("abc123"))).unwrap();
        assert_eq!(ours, golden);
    }

    /// The fields whose absence or damage crashes the worker (docs/contracts.md §2).
    #[test]
    fn envelope_has_every_field_the_worker_requires() {
        for trace_id in ["abc123", "svc:checkout:2024-05-01T10:20:00Z", "quote\"and'backslash\\", "ünïcödé"]
        {
            let envelope: Value = serde_json::from_str(&analyze_trace_envelope(&message(trace_id))).unwrap();
            assert_eq!(envelope["content-type"], "application/json");
            assert_eq!(envelope["headers"]["task"], "analyze_trace");
            assert!(Uuid::parse_str(envelope["headers"]["id"].as_str().unwrap()).is_ok());
            let properties = &envelope["properties"];
            assert!(properties["delivery_tag"].is_string());
            assert_eq!(properties["delivery_info"]["exchange"], "");
            assert_eq!(properties["delivery_info"]["routing_key"], "celery");
            assert_eq!(properties["body_encoding"], "base64");
            let body =
                base64::engine::general_purpose::STANDARD.decode(envelope["body"].as_str().unwrap()).unwrap();
            let body: Value = serde_json::from_slice(&body).unwrap();
            let parts = body.as_array().unwrap();
            assert_eq!(parts.len(), 3, "[args, kwargs, embed]");
            assert_eq!(parts[0], json!([trace_id]));
            assert_eq!(parts[1], json!({}));
        }
    }

    #[test]
    fn eta_is_written_like_python_isoformat_and_omitted_when_none() {
        let envelope: Value = serde_json::from_str(&analyze_trace_envelope(&message("t"))).unwrap();
        assert_eq!(envelope["headers"]["eta"], "2026-11-29T23:33:41.167029+00:00");
        let now = TaskMessage { eta: None, ..message("t") };
        let envelope: Value = serde_json::from_str(&analyze_trace_envelope(&now)).unwrap();
        assert_eq!(envelope["headers"]["eta"], Value::Null);
    }

    #[test]
    fn argsrepr_follows_python_repr() {
        assert_eq!(python_repr("abc123"), "'abc123'");
        assert_eq!(python_repr("it's"), "\"it's\"");
        assert_eq!(python_repr("a'b\"c"), "'a\\'b\"c'");
    }
}
