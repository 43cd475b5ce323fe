//! OTLP attribute values -> JSON for the stored payload.

use base64::Engine;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::{json, Map, Number, Value};

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
        Some(any_value::Value::IntValue(i)) => json!(i),
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

/// The resource's attributes for the payload.
pub fn resource_json(resource: Option<&Resource>) -> Value {
    Value::Object(resource.map(|r| attributes_json(&r.attributes)).unwrap_or_default())
}

/// `{name, version, attributes}` of the instrumentation scope for the payload.
pub fn scope_json(scope: Option<&InstrumentationScope>) -> Value {
    match scope {
        None => json!({"name": "", "version": "", "attributes": {}}),
        Some(s) => {
            json!({"name": s.name, "version": s.version, "attributes": attributes_json(&s.attributes)})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

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
