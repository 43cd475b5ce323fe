//! Reading one JSON object field by field, collecting every problem with its location,
//! so a client gets all of its mistakes in one 422 rather than one per attempt.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::mapping::text::{map_without_nul, without_nul};
use crate::model::time::{parse_timestamp_number, parse_timestamp_str};
use crate::validation::{FieldError, LocPart};

/// Identifiers (trace, span, service) longer than this are refused: they are index keys, and a
/// longer value is a client bug rather than data.
pub const MAX_IDENTIFIER_CHARS: usize = 256;

pub(crate) struct Fields<'a> {
    object: &'a Map<String, Value>,
    loc: Vec<LocPart>,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    /// Starts reading `value`, which must be a JSON object.
    pub fn new(value: &'a Value, loc: Vec<LocPart>) -> Result<Self, Vec<FieldError>> {
        match value {
            Value::Object(object) => Ok(Fields { object, loc, errors: Vec::new() }),
            other => Err(vec![FieldError::new(
                "model_attributes_type",
                loc,
                "Input should be a valid dictionary or object to extract fields from",
            )
            .with_input(other)]),
        }
    }

    /// Present with a non-null value.
    pub fn has(&self, name: &str) -> bool {
        self.value(name).is_some()
    }

    /// Every problem found so far; consumes the reader.
    pub fn into_errors(self) -> Vec<FieldError> {
        debug_assert!(!self.errors.is_empty(), "a failed read must have recorded why");
        self.errors
    }

    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    /// Records `extra_forbidden` for every key outside `allowed`, as the original's models did.
    pub fn reject_unknown(&mut self, allowed: &[&str]) {
        let unknown: Vec<(String, Value)> = self
            .object
            .iter()
            .filter(|(key, _)| !allowed.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        for (key, value) in unknown {
            let mut loc = self.loc.clone();
            loc.push(LocPart::Key(key));
            self.errors.push(
                FieldError::new("extra_forbidden", loc, "Extra inputs are not permitted").with_input(&value),
            );
        }
    }

    /// Records a problem with `name` found by the caller (a rule spanning several fields).
    pub fn error(&mut self, name: &str, kind: &'static str, msg: impl Into<String>) {
        let loc = self.loc_of(name);
        self.errors.push(FieldError::new(kind, loc, msg));
    }

    pub fn required_str(&mut self, name: &str) -> Option<String> {
        self.required(name).and_then(|value| self.as_text(name, value))
    }

    pub fn optional_str(&mut self, name: &str) -> Option<String> {
        self.value(name).and_then(|value| self.as_text(name, value))
    }

    /// A non-empty identifier without NUL characters, at most [`MAX_IDENTIFIER_CHARS`] long.
    pub fn required_identifier(&mut self, name: &str) -> Option<String> {
        self.required(name).and_then(|value| self.as_identifier(name, value))
    }

    /// Like [`Self::required_identifier`], but absent, `null` and `""` all mean "none".
    pub fn optional_identifier(&mut self, name: &str) -> Option<String> {
        match self.value(name) {
            Some(Value::String(s)) if s.is_empty() => None,
            Some(value) => self.as_identifier(name, value),
            None => None,
        }
    }

    pub fn required_uuid(&mut self, name: &str) -> Option<Uuid> {
        self.required(name).and_then(|value| self.as_uuid(name, value))
    }

    pub fn optional_uuid(&mut self, name: &str) -> Option<Uuid> {
        self.value(name).and_then(|value| self.as_uuid(name, value))
    }

    pub fn required_timestamp(&mut self, name: &str) -> Option<DateTime<Utc>> {
        let value = self.required(name)?;
        let parsed = match value {
            Value::String(text) => parse_timestamp_str(text),
            Value::Number(number) => match number.as_f64() {
                Some(n) => parse_timestamp_number(n),
                None => Err(crate::model::time::InvalidTimestamp("timestamp out of range")),
            },
            other => {
                self.push(name, "datetime_type", "Input should be a valid datetime", other);
                return None;
            }
        };
        match parsed {
            Ok(dt) => Some(dt),
            Err(why) => {
                let msg = format!("Input should be a valid datetime, {}", why.0);
                self.push(name, "datetime_parsing", msg, value);
                None
            }
        }
    }

    /// A finite JSON number (integers included); numeric strings are accepted as Pydantic did.
    pub fn required_number(&mut self, name: &str) -> Option<f64> {
        let value = self.required(name)?;
        let number = match value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match number {
            Some(n) if n.is_finite() => Some(n),
            Some(_) => {
                self.push(name, "finite_number", "Input should be a finite number", value);
                None
            }
            None => {
                self.push(name, "float_parsing", "Input should be a valid number", value);
                None
            }
        }
    }

    /// A JSON object (empty when absent or `null`), NUL characters replaced.
    pub fn optional_object(&mut self, name: &str) -> Map<String, Value> {
        match self.value(name) {
            None => Map::new(),
            Some(Value::Object(map)) => map_without_nul(map.clone()),
            Some(other) => {
                self.push(name, "dict_type", "Input should be a valid dictionary", other);
                Map::new()
            }
        }
    }

    fn value(&self, name: &str) -> Option<&'a Value> {
        self.object.get(name).filter(|value| !value.is_null())
    }

    fn required(&mut self, name: &str) -> Option<&'a Value> {
        match self.object.get(name) {
            Some(value) if !value.is_null() => Some(value),
            Some(value) => {
                self.push(name, "string_type", "Input should not be null", value);
                None
            }
            None => {
                self.error(name, "missing", "Field required");
                None
            }
        }
    }

    fn as_text(&mut self, name: &str, value: &Value) -> Option<String> {
        match value {
            Value::String(s) => Some(without_nul(s.clone())),
            other => {
                self.push(name, "string_type", "Input should be a valid string", other);
                None
            }
        }
    }

    fn as_identifier(&mut self, name: &str, value: &Value) -> Option<String> {
        let Value::String(s) = value else {
            self.push(name, "string_type", "Input should be a valid string", value);
            return None;
        };
        if s.is_empty() {
            self.push(name, "string_too_short", "String should have at least 1 character", value);
            None
        } else if s.chars().count() > MAX_IDENTIFIER_CHARS {
            let msg = format!("String should have at most {MAX_IDENTIFIER_CHARS} characters");
            self.push(name, "string_too_long", msg, value);
            None
        } else if s.contains('\0') {
            self.push(name, "value_error", "Value error, must not contain NUL characters", value);
            None
        } else {
            Some(s.clone())
        }
    }

    fn as_uuid(&mut self, name: &str, value: &Value) -> Option<Uuid> {
        match value {
            Value::String(s) => match Uuid::parse_str(s.trim()) {
                Ok(id) => Some(id),
                Err(why) => {
                    let msg = format!("Input should be a valid UUID, {why}");
                    self.push(name, "uuid_parsing", msg, value);
                    None
                }
            },
            other => {
                let msg = "UUID input should be a string, bytes or UUID object";
                self.push(name, "uuid_type", msg, other);
                None
            }
        }
    }

    fn push(&mut self, name: &str, kind: &'static str, msg: impl Into<String>, input: &Value) {
        let loc = self.loc_of(name);
        self.errors.push(FieldError::new(kind, loc, msg).with_input(input));
    }

    fn loc_of(&self, name: &str) -> Vec<LocPart> {
        let mut loc = self.loc.clone();
        loc.push(LocPart::Key(name.to_owned()));
        loc
    }
}
