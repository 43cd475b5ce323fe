//! Query-string parameters, validated with FastAPI's error shapes (`loc: ["query", name]`).

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use chrono::{DateTime, Utc};

use super::cursor::Cursor;
use crate::http::ApiError;
use crate::model::time::parse_timestamp_str;
use crate::store::PageStart;
use crate::validation::{FieldError, LocPart};

/// The query string of one request; problems are collected and reported together.
pub struct Params {
    pairs: Vec<(String, String)>,
    errors: Vec<FieldError>,
}

impl Params {
    pub fn new(query: Result<Query<Vec<(String, String)>>, QueryRejection>) -> Result<Params, ApiError> {
        match query {
            Ok(Query(pairs)) => Ok(Params { pairs, errors: Vec::new() }),
            Err(why) => Err(ApiError::field(FieldError::new(
                "query_parsing",
                vec![LocPart::from("query")],
                format!("Invalid query string: {}", why.body_text()),
            ))),
        }
    }

    // As FastAPI, a repeated scalar parameter takes its last value.
    fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn push(&mut self, name: &str, kind: &'static str, msg: String, input: &str) {
        let error = FieldError::new(kind, vec!["query".into(), name.into()], msg)
            .with_input(&serde_json::Value::String(input.to_owned()));
        self.errors.push(error);
    }

    /// An integer in `min..=max`, `default` when absent.
    pub fn integer(&mut self, name: &str, default: i64, min: i64, max: i64) -> i64 {
        let Some(text) = self.get(name).map(str::to_owned) else {
            return default;
        };
        match text.trim().parse::<i64>() {
            Ok(value) if value < min => {
                self.push(
                    name,
                    "greater_than_equal",
                    format!("Input should be greater than or equal to {min}"),
                    &text,
                );
                default
            }
            Ok(value) if value > max => {
                self.push(
                    name,
                    "less_than_equal",
                    format!("Input should be less than or equal to {max}"),
                    &text,
                );
                default
            }
            Ok(value) => value,
            Err(_) => {
                let msg = "Input should be a valid integer, unable to parse string as an integer".to_owned();
                self.push(name, "int_parsing", msg, &text);
                default
            }
        }
    }

    /// `text` as a UUID; a 422 naming `name` otherwise.
    pub fn uuid(&mut self, name: &str, text: &str) -> Option<uuid::Uuid> {
        match uuid::Uuid::parse_str(text) {
            Ok(id) => Some(id),
            Err(why) => {
                self.push(name, "uuid_parsing", format!("Input should be a valid UUID, {why}"), text);
                None
            }
        }
    }

    /// A string, `None` when absent.
    pub fn text(&mut self, name: &str) -> Option<String> {
        let value = self.get(name)?.to_owned();
        if value.contains('\0') {
            self.push(name, "value_error", "Value error, must not contain NUL characters".to_owned(), &value);
            return None;
        }
        Some(value)
    }

    pub fn timestamp(&mut self, name: &str) -> Option<DateTime<Utc>> {
        let text = self.get(name)?.to_owned();
        match parse_timestamp_str(&text) {
            Ok(dt) => Some(dt),
            Err(why) => {
                self.push(
                    name,
                    "datetime_parsing",
                    format!("Input should be a valid datetime, {}", why.0),
                    &text,
                );
                None
            }
        }
    }

    /// One of a fixed set of values, read by `parse`; `expected` lists them for the message.
    pub fn choice<T>(
        &mut self,
        name: &str,
        parse: impl Fn(&str) -> Option<T>,
        expected: &[&str],
    ) -> Option<T> {
        let text = self.get(name)?.to_owned();
        let parsed = parse(&text);
        if parsed.is_none() {
            let quoted: Vec<String> = expected.iter().map(|e| format!("'{e}'")).collect();
            let msg = match quoted.split_last() {
                Some((last, rest)) if !rest.is_empty() => {
                    format!("Input should be {} or {last}", rest.join(", "))
                }
                _ => format!("Input should be {}", quoted.join("")),
            };
            self.push(name, "enum", msg, &text);
        }
        parsed
    }

    /// Where the page starts: after `cursor` (a previous page's `next_cursor`), skipping
    /// `offset` rows (default 0) more. Also returns the offset to echo in the answer.
    pub fn page_start(&mut self) -> (PageStart, i64) {
        let offset = self.integer("offset", 0, 0, i64::MAX);
        let Some(text) = self.get("cursor").map(str::to_owned) else {
            return (PageStart::Offset(offset), offset);
        };
        match Cursor::decode(&text) {
            Some(cursor) => (PageStart::After { at: cursor.at, id: cursor.id, skip: offset }, offset),
            None => {
                let msg = "Value error, not a cursor: pass the next_cursor of a previous page".to_owned();
                self.push("cursor", "value_error", msg, &text);
                (PageStart::Offset(offset), offset)
            }
        }
    }

    /// `Ok` when every parameter read was valid, else a 422 listing each problem.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

/// A path segment that must be a UUID; 422 at `["path", name]` otherwise.
pub fn path_uuid(name: &str, text: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(text).map_err(|why| {
        ApiError::field(
            FieldError::new(
                "uuid_parsing",
                vec!["path".into(), name.into()],
                format!("Input should be a valid UUID, {why}"),
            )
            .with_input(&serde_json::Value::String(text.to_owned())),
        )
    })
}
