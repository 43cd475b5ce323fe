//! Reading OTLP/JSON objects field by field with the proto3 JSON rules the spec requires:
//! lowerCamelCase keys (snake_case accepted too), `null` meaning absent, 64-bit integers as
//! numbers or decimal strings, doubles as numbers or strings (`NaN`, `Infinity`), enums as
//! integers or names, ids as hex. Every mismatch is an error naming the JSON path: nothing is
//! dropped silently.

use base64::Engine;
use serde_json::{Map, Value};

/// Why a request body is not OTLP/JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct JsonError {
    pub path: String,
    pub reason: String,
}

pub type JsonResult<T> = Result<T, JsonError>;

/// One JSON object (or `null`, read as an empty object) and its path from the root.
pub struct Obj<'a> {
    map: Option<&'a Map<String, Value>>,
    pub path: String,
}

impl<'a> Obj<'a> {
    pub fn new(value: &'a Value, path: String) -> JsonResult<Obj<'a>> {
        match value {
            Value::Object(map) => Ok(Obj { map: Some(map), path }),
            Value::Null => Ok(Obj { map: None, path }),
            _ => Err(JsonError { path, reason: "expected an object".to_owned() }),
        }
    }

    pub fn error<T>(&self, key: &str, reason: impl Into<String>) -> JsonResult<T> {
        Err(JsonError { path: self.child(key), reason: reason.into() })
    }

    fn child(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    /// The value of `key` (lowerCamelCase) or of its snake_case alias; `null` reads as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        let map = self.map?;
        let found = map.get(key).or_else(|| {
            let snake = snake_case(key);
            (snake != key).then(|| map.get(&snake)).flatten()
        });
        found.filter(|v| !v.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn object(&self, key: &str) -> JsonResult<Option<Obj<'a>>> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => Obj::new(value, self.child(key)).map(Some),
        }
    }

    /// The elements of an array field with their paths; absent means empty.
    pub fn array(&self, key: &str) -> JsonResult<Vec<(&'a Value, String)>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                let path = self.child(key);
                Ok(items.iter().enumerate().map(|(i, v)| (v, format!("{path}[{i}]"))).collect())
            }
            Some(_) => self.error(key, "expected an array"),
        }
    }

    /// The objects of an array field.
    pub fn objects(&self, key: &str) -> JsonResult<Vec<Obj<'a>>> {
        self.array(key)?.into_iter().map(|(value, path)| Obj::new(value, path)).collect()
    }

    pub fn string(&self, key: &str) -> JsonResult<String> {
        match self.get(key) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => self.error(key, "expected a string"),
        }
    }

    pub fn bool(&self, key: &str) -> JsonResult<bool> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
            Some(_) => self.error(key, "expected a boolean"),
        }
    }

    pub fn u64(&self, key: &str) -> JsonResult<u64> {
        match self.get(key) {
            None => Ok(0),
            Some(value) => integer(value).and_then(|n| u64::try_from(n).ok()).map_or_else(
                || self.error(key, "expected an unsigned 64-bit integer (number or decimal string)"),
                Ok,
            ),
        }
    }

    pub fn i64(&self, key: &str) -> JsonResult<i64> {
        match self.get(key) {
            None => Ok(0),
            Some(value) => integer(value).and_then(|n| i64::try_from(n).ok()).map_or_else(
                || self.error(key, "expected a signed 64-bit integer (number or decimal string)"),
                Ok,
            ),
        }
    }

    pub fn u32(&self, key: &str) -> JsonResult<u32> {
        match self.get(key) {
            None => Ok(0),
            Some(value) => integer(value)
                .and_then(|n| u32::try_from(n).ok())
                .map_or_else(|| self.error(key, "expected an unsigned 32-bit integer"), Ok),
        }
    }

    pub fn i32(&self, key: &str) -> JsonResult<i32> {
        match self.get(key) {
            None => Ok(0),
            Some(value) => integer(value)
                .and_then(|n| i32::try_from(n).ok())
                .map_or_else(|| self.error(key, "expected a signed 32-bit integer"), Ok),
        }
    }

    /// A double, `0.0` when absent.
    pub fn f64(&self, key: &str) -> JsonResult<f64> {
        Ok(self.opt_f64(key)?.unwrap_or(0.0))
    }

    /// A double that may be absent (proto3 `optional double`).
    pub fn opt_f64(&self, key: &str) -> JsonResult<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => double(value)
                .map(Some)
                .map_or_else(|| self.error(key, "expected a number (or \"NaN\", \"Infinity\")"), Ok),
        }
    }

    pub fn u64_list(&self, key: &str) -> JsonResult<Vec<u64>> {
        self.array(key)?
            .into_iter()
            .map(|(value, path)| {
                integer(value)
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| JsonError { path, reason: "expected an unsigned 64-bit integer".into() })
            })
            .collect()
    }

    pub fn f64_list(&self, key: &str) -> JsonResult<Vec<f64>> {
        self.array(key)?
            .into_iter()
            .map(|(value, path)| {
                double(value).ok_or_else(|| JsonError { path, reason: "expected a number".into() })
            })
            .collect()
    }

    /// An enum given as its number or its proto name (`SPAN_KIND_SERVER`); `from_name` reads names.
    pub fn enumeration(&self, key: &str, from_name: impl Fn(&str) -> Option<i32>) -> JsonResult<i32> {
        match self.get(key) {
            None => Ok(0),
            Some(Value::String(name)) if from_name(name).is_some() => Ok(from_name(name).unwrap_or_default()),
            Some(value) => match integer(value).and_then(|n| i32::try_from(n).ok()) {
                Some(n) => Ok(n),
                None => self.error(key, format!("unknown enum value {value}")),
            },
        }
    }

    /// A trace or span id: hex of any case (`""` means absent). Length is checked by the mapping,
    /// per record; non-hex or odd-length text makes the request undecodable.
    pub fn hex_id(&self, key: &str) -> JsonResult<Vec<u8>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::String(text)) => decode_hex(text).map_or_else(
                || self.error(key, format!("id {text:?} is not hex (OTLP/JSON ids are hex, not base64)")),
                Ok,
            ),
            Some(_) => self.error(key, "expected a hex string"),
        }
    }

    /// `bytesValue`: base64 (standard or URL-safe, padding optional), as proto3 JSON says.
    pub fn base64(&self, key: &str) -> JsonResult<Vec<u8>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::String(text)) => {
                decode_base64(text).map_or_else(|| self.error(key, "expected base64"), Ok)
            }
            Some(_) => self.error(key, "expected a base64 string"),
        }
    }
}

/// An integral JSON number, or a decimal string of one (`"1544712660300000000"`).
fn integer(value: &Value) -> Option<i128> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18).map(|f| f as i128)),
        Value::String(s) => s.trim().parse::<i128>().ok(),
        _ => None,
    }
}

fn double(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            other => other.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        },
        _ => None,
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.as_bytes().chunks(2).map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::engine::DecodePaddingMode;
    let config = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, config);
    let url_safe = GeneralPurpose::new(&base64::alphabet::URL_SAFE, config);
    standard.decode(text).or_else(|_| url_safe.decode(text)).ok()
}

/// `resourceSpans` -> `resource_spans`.
fn snake_case(camel: &str) -> String {
    let mut snake = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            snake.push('_');
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(value: &Value) -> Obj<'_> {
        Obj::new(value, "$".to_owned()).unwrap()
    }

    #[test]
    fn snake_case_aliases_and_nulls() {
        let value = json!({"trace_id": "ab", "timeUnixNano": null});
        let o = obj(&value);
        assert_eq!(o.hex_id("traceId").unwrap(), vec![0xab]);
        assert_eq!(o.u64("timeUnixNano").unwrap(), 0);
        assert_eq!(snake_case("startTimeUnixNano"), "start_time_unix_nano");
    }

    #[test]
    fn int64_as_string_or_number() {
        let value = json!({"a": "1544712660300000000", "b": 1544712660300000000u64, "c": "-5", "d": 1.5});
        let o = obj(&value);
        assert_eq!(o.u64("a").unwrap(), 1544712660300000000);
        assert_eq!(o.u64("b").unwrap(), 1544712660300000000);
        assert_eq!(o.i64("c").unwrap(), -5);
        assert!(o.u64("c").is_err());
        assert!(o.i64("d").is_err());
    }

    #[test]
    fn doubles_accept_strings_and_special_values() {
        let value = json!({"a": "NaN", "b": "Infinity", "c": "1.5", "d": 2, "e": "x"});
        let o = obj(&value);
        assert!(o.f64("a").unwrap().is_nan());
        assert_eq!(o.f64("b").unwrap(), f64::INFINITY);
        assert_eq!(o.f64("c").unwrap(), 1.5);
        assert_eq!(o.opt_f64("d").unwrap(), Some(2.0));
        assert_eq!(o.opt_f64("missing").unwrap(), None);
        let error = o.f64("e").unwrap_err();
        assert_eq!(error.path, "$.e");
    }

    #[test]
    fn ids_are_hex_of_any_case_and_base64_is_refused() {
        let value = json!({"u": "5B8EFFF798038103D269B633813FC60C", "l": "5b8efff798038103d269b633813fc60c", "b": "W47/95gDgQPSabYzgT/GDA==", "o": "abc", "e": ""});
        let o = obj(&value);
        assert_eq!(o.hex_id("u").unwrap(), o.hex_id("l").unwrap());
        assert_eq!(o.hex_id("u").unwrap().len(), 16);
        assert!(o.hex_id("b").is_err());
        assert!(o.hex_id("o").is_err());
        assert!(o.hex_id("e").unwrap().is_empty());
    }

    #[test]
    fn enums_accept_numbers_and_names() {
        let value = json!({"n": 2, "s": "SPAN_KIND_SERVER", "bad": "SPAN_KIND_NOPE"});
        let o = obj(&value);
        let names = |name: &str| (name == "SPAN_KIND_SERVER").then_some(2);
        assert_eq!(o.enumeration("n", names).unwrap(), 2);
        assert_eq!(o.enumeration("s", names).unwrap(), 2);
        assert!(o.enumeration("bad", names).is_err());
    }

    #[test]
    fn wrong_types_name_their_path() {
        let value = json!({"spans": 5});
        let error = obj(&value).array("spans").unwrap_err();
        assert_eq!(error.to_string(), "$.spans: expected an array");
    }
}
