//! Limits on what one stored signal may carry, applied to every payload whatever its source:
//! an attribute map keeps at most `attribute_count` entries, a string at most `value_length`
//! bytes. A client that sends a 10 MB attribute or a million attributes gets its signal stored,
//! trimmed, with a `truncated` note saying how much was cut, rather than a database row that
//! slows every query that reads it.

use serde_json::{json, Map, Value};

pub use crate::model::ValueLimits;

/// What [`apply`] cut from one payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trimmed {
    pub attributes_dropped: u64,
    pub values_truncated: u64,
}

/// Keys whose object value is a map of attributes (OTLP and legacy payloads alike).
pub(crate) const ATTRIBUTE_MAPS: &[&str] = &["attributes", "resource", "filtered_attributes"];

/// Trims `payload` in place and, when anything was cut, records it under `truncated`.
/// Attribute maps keep their first entries in key order (the stored order); an attribute whose
/// key alone is longer than the value limit is dropped.
pub fn apply(payload: &mut Map<String, Value>, limits: ValueLimits) -> Trimmed {
    let mut trimmed = Trimmed::default();
    for (key, value) in payload.iter_mut() {
        trim(key, value, limits, &mut trimmed);
    }
    if trimmed != Trimmed::default() {
        payload.insert("truncated".to_owned(), truncation_note(trimmed, limits));
    }
    trimmed
}

/// The `truncated` object of a payload something was cut from.
pub fn truncation_note(trimmed: Trimmed, limits: ValueLimits) -> Value {
    json!({
        "attributes_dropped": trimmed.attributes_dropped,
        "values_truncated": trimmed.values_truncated,
        "attribute_count_limit": limits.attribute_count,
        "value_length_limit": limits.value_length,
    })
}

impl Trimmed {
    pub fn plus(self, other: Trimmed) -> Trimmed {
        Trimmed {
            attributes_dropped: self.attributes_dropped + other.attributes_dropped,
            values_truncated: self.values_truncated + other.values_truncated,
        }
    }
}

// Depth is bounded by the decoders (prost: 100 levels, serde_json: 128), so recursion is safe.
fn trim(key: &str, value: &mut Value, limits: ValueLimits, trimmed: &mut Trimmed) {
    match value {
        Value::String(text) => {
            if text.len() > limits.value_length {
                text.truncate(floor_char_boundary(text, limits.value_length));
                trimmed.values_truncated += 1;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| trim(key, item, limits, trimmed)),
        Value::Object(map) => {
            if ATTRIBUTE_MAPS.contains(&key) {
                let before = map.len();
                map.retain(|k, _| k.len() <= limits.value_length);
                if map.len() > limits.attribute_count {
                    let excess: Vec<String> = map.keys().skip(limits.attribute_count).cloned().collect();
                    for k in &excess {
                        map.remove(k);
                    }
                }
                trimmed.attributes_dropped += (before - map.len()) as u64;
            }
            for (child, item) in map.iter_mut() {
                trim(child, item, limits, trimmed);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The largest index not above `at` that starts a character.
pub(crate) fn floor_char_boundary(text: &str, at: usize) -> usize {
    (0..=at.min(text.len())).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(attribute_count: usize, value_length: usize) -> ValueLimits {
        ValueLimits { attribute_count, value_length }
    }

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn a_payload_within_the_limits_is_untouched() {
        let original = object(json!({"message": "ok", "attributes": {"a": 1, "b": "two"}, "events": []}));
        let mut payload = original.clone();
        assert_eq!(apply(&mut payload, limits(2, 10)), Trimmed::default());
        assert_eq!(payload, original);
    }

    #[test]
    fn attribute_maps_keep_their_first_entries_at_any_depth() {
        let mut payload = object(json!({
            "attributes": {"a": 1, "b": 2, "c": 3},
            "events": [{"name": "e", "attributes": {"x": 1, "y": 2, "z": 3}}],
            "resource": {"service.name": "s", "host.name": "h", "os.type": "linux"},
            "scope": {"name": "n", "attributes": {"k": 1}},
        }));
        let trimmed = apply(&mut payload, limits(2, 100));
        assert_eq!(trimmed, Trimmed { attributes_dropped: 3, values_truncated: 0 });
        assert_eq!(payload["attributes"], json!({"a": 1, "b": 2}));
        assert_eq!(payload["events"][0]["attributes"], json!({"x": 1, "y": 2}));
        assert_eq!(payload["resource"], json!({"host.name": "h", "os.type": "linux"}));
        assert_eq!(payload["truncated"]["attributes_dropped"], 3);
    }

    #[test]
    fn long_strings_are_cut_at_a_character_boundary_wherever_they_are() {
        let mut payload = object(json!({
            "message": "é".repeat(10),
            "attributes": {"list": ["abcdefghijkl", "ok"], "nested": {"deep": "x".repeat(50)}},
        }));
        let trimmed = apply(&mut payload, limits(128, 7));
        assert_eq!(trimmed, Trimmed { attributes_dropped: 0, values_truncated: 3 });
        assert_eq!(payload["message"], "ééé", "7 bytes hold three 2-byte characters");
        assert_eq!(payload["attributes"]["list"], json!(["abcdefg", "ok"]));
        assert_eq!(payload["attributes"]["nested"]["deep"], "xxxxxxx");
        assert_eq!(payload["truncated"]["values_truncated"], 3);
        assert_eq!(payload["truncated"]["value_length_limit"], 7);
    }

    #[test]
    fn an_attribute_with_an_oversized_key_is_dropped() {
        let mut payload = object(json!({"attributes": {"k".repeat(20): 1, "ok": 2}}));
        assert_eq!(apply(&mut payload, limits(128, 10)).attributes_dropped, 1);
        assert_eq!(payload["attributes"], json!({"ok": 2}));
    }
}
