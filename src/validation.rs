//! Field-level validation errors, in the shape FastAPI/Pydantic clients already parse:
//! `{"detail": [{"type", "loc", "msg", "input"?}]}`. Pure data; rendering lives in `api::error`.

use serde::Serialize;
use serde_json::Value;

/// One step of the path to a bad value: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum LocPart {
    Key(String),
    Index(usize),
}

impl From<&str> for LocPart {
    fn from(key: &str) -> Self {
        LocPart::Key(key.to_owned())
    }
}

impl From<usize> for LocPart {
    fn from(index: usize) -> Self {
        LocPart::Index(index)
    }
}

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    /// Pydantic's error type, e.g. `missing`, `string_type`, `extra_forbidden`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub loc: Vec<LocPart>,
    pub msg: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

impl FieldError {
    pub fn new(kind: &'static str, loc: Vec<LocPart>, msg: impl Into<String>) -> Self {
        FieldError { kind, loc, msg: msg.into(), input: None }
    }

    /// Attaches the offending value, truncated so an error never echoes a huge input back.
    pub fn with_input(mut self, input: &Value) -> Self {
        self.input = Some(truncated(input));
        self
    }

    /// Where the error is, as a dotted path (`body.0.trace_id`), for logs and tests.
    pub fn path(&self) -> String {
        self.loc
            .iter()
            .map(|part| match part {
                LocPart::Key(key) => key.clone(),
                LocPart::Index(i) => i.to_string(),
            })
            .collect::<Vec<_>>()
            .join(".")
    }
}

const MAX_ECHOED_CHARS: usize = 200;

fn truncated(input: &Value) -> Value {
    match input {
        Value::String(s) if s.chars().count() > MAX_ECHOED_CHARS => {
            Value::String(s.chars().take(MAX_ECHOED_CHARS).chain("…".chars()).collect())
        }
        Value::Array(_) | Value::Object(_) => {
            let text = input.to_string();
            if text.len() > MAX_ECHOED_CHARS {
                Value::String(text.chars().take(MAX_ECHOED_CHARS).chain("…".chars()).collect())
            } else {
                input.clone()
            }
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serialises_like_pydantic() {
        let error =
            FieldError::new("missing", vec!["body".into(), 2.into(), "level".into()], "Field required");
        assert_eq!(
            serde_json::to_value(&error).unwrap(),
            json!({"type": "missing", "loc": ["body", 2, "level"], "msg": "Field required"})
        );
        assert_eq!(error.path(), "body.2.level");
    }

    #[test]
    fn echoed_input_is_truncated() {
        let big = Value::String("x".repeat(10_000));
        let error = FieldError::new("string_type", vec![], "bad").with_input(&big);
        let echoed = error.input.unwrap();
        assert!(echoed.as_str().unwrap().chars().count() <= MAX_ECHOED_CHARS + 1);
    }
}
