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

    /// v3's parameters under either of their names: the proto field name (`query.service_name`,
    /// what Grafana sends) or its JSON name (`query.serviceName`, what Jaeger UI sends).
    pub fn v3(self) -> Query {
        const JSON_NAMES: [(&str, &str); 7] = [
            ("query.serviceName", "query.service_name"),
            ("query.operationName", "query.operation_name"),
            ("query.startTimeMin", "query.start_time_min"),
            ("query.startTimeMax", "query.start_time_max"),
            ("query.durationMin", "query.duration_min"),
            ("query.durationMax", "query.duration_max"),
            ("query.searchDepth", "query.search_depth"),
        ];
        let pairs = self
            .pairs
            .into_iter()
            .map(|(key, value)| match JSON_NAMES.iter().find(|(json, _)| *json == key) {
                Some((_, proto)) => ((*proto).to_owned(), value),
                None => (key, value),
            })
            .collect();
        Query { pairs }
    }

    /// The last non-empty value of `name` (an empty value, or a bare key, is no value).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v.as_str())
    }

    /// Every non-empty value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v.as_str()).collect()
    }

    /// A count of 1 to `digits` decimal digits, `default` when absent.
    pub fn count(&self, name: &str, digits: usize, default: i64) -> Result<i64, JaegerError> {
        let Some(text) = self.get(name) else { return Ok(default) };
        digits_value(text, digits)
            .ok_or_else(|| bad(name, text, &format!("must be 1 to {digits} decimal digits")))
    }

    /// A time as a count of `unit_micros` since the epoch, of up to `digits` digits.
    pub fn epoch_time(
        &self,
        name: &str,
        digits: usize,
        unit_micros: i64,
    ) -> Result<Option<DateTime<Utc>>, JaegerError> {
        let Some(text) = self.get(name) else { return Ok(None) };
        let count = self.count(name, digits, 0)?;
        let time = count.checked_mul(unit_micros).and_then(DateTime::from_timestamp_micros);
        time.map(Some).ok_or_else(|| bad(name, text, "is out of range"))
    }

    /// An RFC 3339 time; given empty, a refusal (v3's times are never sent empty).
    pub fn rfc3339(&self, name: &str) -> Result<Option<DateTime<Utc>>, JaegerError> {
        let Some((_, text)) = self.pairs.iter().rev().find(|(k, _)| k == name) else { return Ok(None) };
        DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| bad(name, text, "must be an RFC 3339 time, such as 2026-12-06T10:00:00Z"))
    }

    /// A Go duration (`1.2s`, `300ms`, `1h30m`, `2d`), as [`parse_duration`] reads it.
    pub fn duration(&self, name: &str) -> Result<Option<TimeDelta>, JaegerError> {
        let Some(text) = self.get(name) else { return Ok(None) };
        parse_duration(text).map(Some).ok_or_else(|| {
            bad(
                name,
                text,
                "must be a duration such as 300ms, 1.2s or 1h30m (units ns, us, ms, s, m, h, d; at most four parts of at most four digits)",
            )
        })
    }

    /// A count of milliseconds, of up to `digits` digits.
    pub fn millis(&self, name: &str, digits: usize) -> Result<Option<TimeDelta>, JaegerError> {
        if self.get(name).is_none() {
            return Ok(None);
        }
        Ok(Some(TimeDelta::milliseconds(self.count(name, digits, 0)?)))
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

/// `1` to `digits` ASCII digits, as a number.
fn digits_value(text: &str, digits: usize) -> Option<i64> {
    let valid = !text.is_empty() && text.len() <= digits.min(18) && text.bytes().all(|b| b.is_ascii_digit());
    valid.then(|| text.parse().ok()).flatten()
}

/// A JSON object of scalar values (strings, numbers, booleans), or `key=value` pairs
/// separated by spaces when the text is not JSON at all.
fn parse_tags(text: &str) -> Option<Vec<TagFilter>> {
    if let Ok(json) = serde_json::from_str::<Value>(text) {
        let Value::Object(map) = json else { return None };
        return map
            .iter()
            .map(|(k, v)| match v {
                Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                    Some(TagFilter { key: k.clone(), value: value_text(v) })
                }
                _ => None,
            })
            .collect();
    }
    text.split_whitespace()
        .map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let value = value.trim_matches('"');
            (!key.is_empty()).then(|| TagFilter { key: key.to_owned(), value: value.to_owned() })
        })
        .collect()
}

/// What [`parse_duration`] reads, as the API description states it (empty: absent).
#[cfg(test)]
pub const DURATION_PATTERN: &str =
    r"^(0|(([0-9]{1,4}(\.[0-9]{0,9})?|\.[0-9]{1,9})(ns|us|µs|μs|ms|s|m|h|d)){1,4})?$";

/// A Go duration: one to four decimal numbers (up to four digits, and up to nine after the
/// point), each with a unit; a lone `0` is zero. Bounded so that no duration overflows.
pub fn parse_duration(text: &str) -> Option<TimeDelta> {
    if text == "0" {
        return Some(TimeDelta::zero());
    }
    let mut rest = text;
    let mut nanos = 0f64;
    if rest.is_empty() {
        return None;
    }
    let mut parts = 0;
    while !rest.is_empty() {
        parts += 1;
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number_text = &rest[..number_end];
        let (whole, fraction) = number_text.split_once('.').unwrap_or((number_text, ""));
        if parts > 4 || whole.len() > 4 || fraction.len() > 9 || (whole.is_empty() && fraction.is_empty()) {
            return None;
        }
        let number: f64 = number_text.parse().ok()?;
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
        assert_eq!(parse_duration("1."), None, "no unit");
        assert_eq!(parse_duration("1.s"), Some(TimeDelta::seconds(1)));
        assert_eq!(parse_duration("9999.999999999d1h1m1s").map(|d| d > TimeDelta::days(9999)), Some(true));
        for wrong in [
            "",
            "12",
            "ms",
            "1.2.3s",
            "5x",
            "-1s",
            "1e3s",
            " 1s",
            "1s ",
            "00",
            "12345s",
            "1.1234567890s",
            "1s1s1s1s1s",
            ".s",
        ] {
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
        for wrong in [r#"[1]"#, r#""a=b""#, r#"{"a":null}"#, r#"{"a":{"b":"c"}}"#, "7"] {
            assert!(query(&[("tags", wrong)]).tags("tags").is_err(), "{wrong}");
        }
    }

    #[test]
    fn empty_and_bare_parameters_are_absent() {
        let q = query(&[("operation", ""), ("service", "a"), ("service", "")]);
        assert_eq!(q.get("operation"), None);
        assert_eq!(q.get("service"), Some("a"), "the last non-empty value");
        assert_eq!(q.count("limit", 4, 20).unwrap(), 20);
        assert!(query(&[("limit", " 5")]).count("limit", 4, 20).is_err(), "no spaces");
        assert!(query(&[("limit", "12345")]).count("limit", 4, 20).is_err());
    }

    #[test]
    fn times_are_read_in_their_unit() {
        let q = query(&[
            ("start", "1700000000000000"),
            ("endTs", "1700000000000"),
            ("bad", "12a"),
            ("neg", "-5"),
            ("v3", ""),
        ]);
        let expected = DateTime::from_timestamp(1_700_000_000, 0);
        assert_eq!(q.epoch_time("start", 17, 1).unwrap(), expected);
        assert_eq!(q.epoch_time("endTs", 14, 1_000).unwrap(), expected);
        assert!(q.epoch_time("bad", 17, 1).is_err());
        assert!(q.epoch_time("neg", 17, 1).is_err());
        assert!(q.epoch_time("start", 15, 1).is_err(), "more digits than allowed");
        assert!(q.rfc3339("v3").is_err(), "an empty v3 time is refused, not ignored");
        assert_eq!(q.rfc3339("absent").unwrap(), None);
    }
}
