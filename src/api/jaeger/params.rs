//! The query strings of the Jaeger API, read as Jaeger's query service reads them: empty values
//! (and bare keys, which the UI sends for empty fields) are absent, times are microseconds
//! (v1), milliseconds (`dependencies`) or RFC 3339 (v3), durations are Go's (`1.2s`, `300ms`,
//! `1h30m`; `d` for days too), tags a JSON object, `key=value` pairs or `tag=key:value`.
//! Every refusal names the parameter.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use super::JaegerError;
use crate::store::TagFilter;

/// The pairs of one query string.
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn new(pairs: Vec<(String, String)>) -> Query {
        Query { pairs }
    }

    /// The last non-empty value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, v)| k == name && !v.trim().is_empty()).map(|(_, v)| v.trim())
    }

    /// Every non-empty value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(k, v)| k == name && !v.trim().is_empty()).map(|(_, v)| v.trim()).collect()
    }

    /// An integer in `min..=max`, `default` when absent.
    pub fn integer(&self, name: &str, default: i64, min: i64, max: i64) -> Result<i64, JaegerError> {
        let Some(text) = self.get(name) else { return Ok(default) };
        match text.parse::<i64>() {
            Ok(value) if (min..=max).contains(&value) => Ok(value),
            Ok(_) => Err(bad(name, text, &format!("must be from {min} to {max}"))),
            Err(_) => Err(bad(name, text, "must be an integer")),
        }
    }

    /// A time given as an integer count of `unit` since the epoch (`micros`: 1 µs, else 1 ms).
    pub fn epoch_time(&self, name: &str, unit_micros: i64) -> Result<Option<DateTime<Utc>>, JaegerError> {
        let Some(text) = self.get(name) else { return Ok(None) };
        let count =
            text.parse::<i64>().map_err(|_| bad(name, text, "must be an integer count since the epoch"))?;
        count
            .checked_mul(unit_micros)
            .and_then(DateTime::from_timestamp_micros)
            .map(Some)
            .ok_or_else(|| bad(name, text, "is out of range"))
    }

    /// An RFC 3339 time.
    pub fn rfc3339(&self, name: &str) -> Result<Option<DateTime<Utc>>, JaegerError> {
        let Some(text) = self.get(name) else { return Ok(None) };
        DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| bad(name, text, "must be an RFC 3339 time, such as 2026-12-06T10:00:00Z"))
    }

    /// A Go duration (`1.2s`, `300ms`, `1h30m`, `2d`).
    pub fn duration(&self, name: &str) -> Result<Option<TimeDelta>, JaegerError> {
        let Some(text) = self.get(name) else { return Ok(None) };
        parse_duration(text).map(Some).ok_or_else(|| {
            bad(name, text, "must be a duration such as 300ms, 1.2s or 1h30m (units ns, us, ms, s, m, h, d)")
        })
    }

    /// A count of milliseconds.
    pub fn millis(&self, name: &str) -> Result<Option<TimeDelta>, JaegerError> {
        let Some(text) = self.get(name) else { return Ok(None) };
        match text.parse::<i64>() {
            Ok(ms) if ms >= 0 => Ok(Some(TimeDelta::milliseconds(ms))),
            _ => Err(bad(name, text, "must be a non-negative integer count of milliseconds")),
        }
    }

    /// The tags of a search: `tags` (a JSON object, or `key=value` pairs separated by spaces)
    /// and each `tag=key:value`.
    pub fn tags(&self, name: &str) -> Result<Vec<TagFilter>, JaegerError> {
        let mut tags = Vec::new();
        for text in self.all(name) {
            tags.extend(parse_tags(text).ok_or_else(|| {
                bad(
                    name,
                    text,
                    r#"must be a JSON object such as {"http.status_code":"500"}, or key=value pairs"#,
                )
            })?);
        }
        for text in self.all("tag") {
            let (key, value) = text.split_once(':').ok_or_else(|| bad("tag", text, "must be key:value"))?;
            tags.push(TagFilter { key: key.to_owned(), value: value.to_owned() });
        }
        Ok(tags)
    }
}

fn bad(name: &str, value: &str, why: &str) -> JaegerError {
    JaegerError::BadRequest(format!("unable to parse param '{name}' ({value:?}): {why}"))
}

/// A tag value as text: strings as they are, anything else as its JSON (`true`, `200`).
fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn parse_tags(text: &str) -> Option<Vec<TagFilter>> {
    if text.starts_with('{') {
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else { return None };
        return Some(map.iter().map(|(k, v)| TagFilter { key: k.clone(), value: value_text(v) }).collect());
    }
    text.split_whitespace()
        .map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let value = value.trim_matches('"');
            (!key.is_empty()).then(|| TagFilter { key: key.to_owned(), value: value.to_owned() })
        })
        .collect()
}

/// A Go duration: a sequence of decimal numbers, each with a unit; a lone `0` is zero.
pub fn parse_duration(text: &str) -> Option<TimeDelta> {
    if text == "0" {
        return Some(TimeDelta::zero());
    }
    let mut rest = text;
    let mut nanos = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86_400e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        nanos += number * scale;
    }
    (nanos.is_finite() && nanos < i64::MAX as f64).then(|| TimeDelta::nanoseconds(nanos.round() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Query {
        Query::new(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn go_durations_are_read_with_every_unit_and_refused_otherwise() {
        assert_eq!(parse_duration("1.2s"), Some(TimeDelta::milliseconds(1200)));
        assert_eq!(parse_duration("300ms"), Some(TimeDelta::milliseconds(300)));
        assert_eq!(parse_duration("1h30m"), Some(TimeDelta::minutes(90)));
        assert_eq!(parse_duration("2d"), Some(TimeDelta::days(2)));
        assert_eq!(parse_duration("15us"), Some(TimeDelta::microseconds(15)));
        assert_eq!(parse_duration("15µs"), Some(TimeDelta::microseconds(15)));
        assert_eq!(parse_duration("0"), Some(TimeDelta::zero()));
        for wrong in ["", "12", "ms", "1.2.3s", "5x", "-1s", "1e3s"] {
            assert_eq!(parse_duration(wrong), None, "{wrong}");
        }
    }

    #[test]
    fn tags_come_as_json_pairs_or_the_old_tag_parameter() {
        let q = query(&[("tags", r#"{"error":"true","http.status_code":500}"#), ("tag", "a:b:c")]);
        let tags = q.tags("tags").unwrap();
        let pairs: Vec<(&str, &str)> = tags.iter().map(|t| (t.key.as_str(), t.value.as_str())).collect();
        assert_eq!(pairs, [("error", "true"), ("http.status_code", "500"), ("a", "b:c")]);
        let q = query(&[("tags", r#"error=true region="eu west""#)]);
        assert!(q.tags("tags").is_err(), "a quoted value with a space is not a pair");
        let q = query(&[("tags", "error=true region=eu")]);
        assert_eq!(q.tags("tags").unwrap().len(), 2);
        let q = query(&[("tags", "{not json")]);
        let Err(JaegerError::BadRequest(message)) = q.tags("tags") else { panic!("accepted") };
        assert!(message.contains("'tags'"), "{message}");
    }

    #[test]
    fn empty_and_bare_parameters_are_absent() {
        let q = query(&[("operation", ""), ("service", "a"), ("service", " ")]);
        assert_eq!(q.get("operation"), None);
        assert_eq!(q.get("service"), Some("a"), "the last non-empty value");
        assert_eq!(q.integer("limit", 20, 1, 1500).unwrap(), 20);
    }

    #[test]
    fn times_are_read_in_their_unit() {
        let q = query(&[("start", "1700000000000000"), ("endTs", "1700000000000"), ("bad", "12a")]);
        let expected = DateTime::from_timestamp(1_700_000_000, 0);
        assert_eq!(q.epoch_time("start", 1).unwrap(), expected);
        assert_eq!(q.epoch_time("endTs", 1_000).unwrap(), expected);
        assert!(q.epoch_time("bad", 1).is_err());
    }
}
