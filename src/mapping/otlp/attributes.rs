//! OTLP attribute values -> JSON for the stored payload: written directly ([`write_attributes`]);
//! as a tree ([`any_value_json`]) only for the text of a structured log body and a non-string
//! stack trace, which must be the tree's JSON text (sorted keys).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::{Map, Number, Value};

use crate::mapping::json_out::{without_nul, JsonOut};
use crate::mapping::limits::{ValueLimits, ATTRIBUTE_MAPS};
use crate::model::payload::Shared;

/// The resource attribute naming the service (semantic conventions).
const SERVICE_NAME: &str = "service.name";
/// Stored when the resource names no service, as the SDKs' own fallback does.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// An `AnyValue` as natural JSON: strings, booleans, numbers, arrays and objects as themselves;
/// bytes as base64 text; an empty value as `null`; non-finite doubles as `"NaN"`, `"Infinity"`,
/// `"-Infinity"` (JSON has no such numbers).
pub fn any_value_json(value: &AnyValue) -> Value {
    match &value.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => f64_json(*d),
        Some(any_value::Value::BytesValue(bytes)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        Some(any_value::Value::ArrayValue(array)) => {
            Value::Array(array.values.iter().map(any_value_json).collect())
        }
        Some(any_value::Value::KvlistValue(list)) => Value::Object(attributes_json(&list.values)),
        // A profiles-only dictionary reference: meaningless outside profiles.
        Some(any_value::Value::StringValueStrindex(_)) => Value::Null,
    }
}

/// A finite double as a JSON number, a non-finite one as its proto3 JSON string.
pub fn f64_json(value: f64) -> Value {
    match Number::from_f64(value) {
        Some(number) => Value::Number(number),
        None if value.is_nan() => Value::String("NaN".to_owned()),
        None if value > 0.0 => Value::String("Infinity".to_owned()),
        None => Value::String("-Infinity".to_owned()),
    }
}

/// Attributes as a JSON object; on a repeated key the last value wins.
pub fn attributes_json(attributes: &[KeyValue]) -> Map<String, Value> {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, any_value_json)))
        .collect()
}

/// The value of one attribute as text, if present (non-strings as their JSON text).
pub fn attribute_text(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().rev().find(|kv| kv.key == key)?.value.as_ref()?;
    match any_value_json(value) {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// `service.name` of the resource, `unknown_service` when absent or empty.
pub fn service_name(resource: Option<&Resource>) -> String {
    resource
        .and_then(|r| attribute_text(&r.attributes, SERVICE_NAME))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| UNKNOWN_SERVICE.to_owned())
}

/// The resource and scope of one export, encoded once for all its records (stored once per
/// distinct value, re-attached by the API: [`crate::model::payload`]).
pub fn shared_part(
    resource: Option<&Resource>,
    scope: Option<&InstrumentationScope>,
    limits: ValueLimits,
) -> Arc<Shared> {
    let mut out = JsonOut::new(limits, 256);
    write_attributes(&mut out, "resource", resource.map_or(&[], |r| &r.attributes[..]));
    let mut trimmed = out.trimmed;
    let resource = out.finish();
    let mut out = JsonOut::new(limits, 128);
    out.begin_object();
    out.field_str("name", scope.map_or("", |s| &s.name));
    out.field_str("version", scope.map_or("", |s| &s.version));
    out.key("attributes");
    write_attributes(&mut out, "attributes", scope.map_or(&[], |s| &s.attributes[..]));
    out.end_object();
    trimmed = trimmed.plus(out.trimmed);
    Shared::new(resource, out.finish(), trimmed.attributes_dropped, trimmed.values_truncated)
}

/// Attributes as a JSON object under `key`. An attribute map (`ATTRIBUTE_MAPS`) keeps at most
/// `attribute_count` entries, the first in key order, and drops keys longer than the value limit;
/// on a repeated key the last value wins (here, or in the database's jsonb, which keeps the last).
pub fn write_attributes(out: &mut JsonOut, key: &str, attributes: &[KeyValue]) {
    let limits = out.limits;
    let limited = ATTRIBUTE_MAPS.contains(&key);
    let fits = !limited
        || (attributes.len() <= limits.attribute_count
            && attributes.iter().all(|kv| stored_key_len(&kv.key) <= limits.value_length));
    out.begin_object();
    if fits {
        for kv in attributes {
            out.key(&kv.key);
            write_value(out, &kv.key, kv.value.as_ref());
        }
    } else {
        let mut map: BTreeMap<String, Option<&AnyValue>> = BTreeMap::new();
        for kv in attributes {
            map.insert(without_nul(&kv.key).into_owned(), kv.value.as_ref());
        }
        let before = map.len();
        let kept: Vec<(String, Option<&AnyValue>)> = map
            .into_iter()
            .filter(|(k, _)| k.len() <= limits.value_length)
            .take(limits.attribute_count)
            .collect();
        out.trimmed.attributes_dropped += (before - kept.len()) as u64;
        for (k, value) in &kept {
            out.key(k);
            write_value(out, k, *value);
        }
    }
    out.end_object();
}

/// A key's length once its NULs are replaced (U+FFFD is three bytes).
fn stored_key_len(key: &str) -> usize {
    key.len() + 2 * key.bytes().filter(|b| *b == 0).count()
}

fn write_value(out: &mut JsonOut, key: &str, value: Option<&AnyValue>) {
    match value {
        None => out.null(),
        Some(value) => write_any(out, key, value),
    }
}

/// An `AnyValue` as natural JSON ([`any_value_json`]'s forms), written directly. `key` is the
/// key it is stored under: it decides whether a nested list is an attribute map.
pub fn write_any(out: &mut JsonOut, key: &str, value: &AnyValue) {
    match &value.value {
        None | Some(any_value::Value::StringValueStrindex(_)) => out.null(),
        Some(any_value::Value::StringValue(s)) => out.str(s),
        Some(any_value::Value::BoolValue(b)) => out.bool(*b),
        Some(any_value::Value::IntValue(i)) => out.i64(*i),
        Some(any_value::Value::DoubleValue(d)) => out.f64(*d),
        Some(any_value::Value::BytesValue(bytes)) => {
            out.str(&base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        Some(any_value::Value::ArrayValue(array)) => {
            out.begin_array();
            for item in &array.values {
                write_any(out, key, item);
            }
            out.end_array();
        }
        Some(any_value::Value::KvlistValue(list)) => write_attributes(out, key, &list.values),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use serde_json::json;

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
    }

    #[test]
    fn every_any_value_form_becomes_natural_json() {
        let nested = any_value::Value::KvlistValue(KeyValueList {
            values: vec![kv(
                "inner",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue { value: Some(any_value::Value::IntValue(7)) },
                        AnyValue { value: None },
                    ],
                }),
            )],
        });
        let attributes = vec![
            kv("s", any_value::Value::StringValue("x".into())),
            kv("b", any_value::Value::BoolValue(true)),
            kv("i", any_value::Value::IntValue(-3)),
            kv("d", any_value::Value::DoubleValue(1.5)),
            kv("nan", any_value::Value::DoubleValue(f64::NAN)),
            kv("bytes", any_value::Value::BytesValue(vec![0xde, 0xad])),
            kv("nested", nested),
        ];
        assert_eq!(
            Value::Object(attributes_json(&attributes)),
            json!({"s": "x", "b": true, "i": -3, "d": 1.5, "nan": "NaN", "bytes": "3q0=", "nested": {"inner": [7, null]}})
        );
    }

    #[test]
    fn service_name_falls_back_to_unknown_service() {
        assert_eq!(service_name(None), "unknown_service");
        let empty = Resource {
            attributes: vec![kv("service.name", any_value::Value::StringValue(String::new()))],
            ..Default::default()
        };
        assert_eq!(service_name(Some(&empty)), "unknown_service");
        let named = Resource {
            attributes: vec![kv("service.name", any_value::Value::StringValue("checkout".into()))],
            ..Default::default()
        };
        assert_eq!(service_name(Some(&named)), "checkout");
    }
}
