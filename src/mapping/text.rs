//! Text normalisation every stored string goes through.
//!
//! PostgreSQL refuses U+0000 in `text`, `varchar` and `jsonb`, so a NUL that reached the
//! database would fail the whole batch. Free text (messages, attribute keys and values) keeps
//! its content with each NUL replaced by U+FFFD (the Unicode replacement character);
//! identifiers are refused instead, by the mapping that reads them.

use serde_json::{Map, Value};

/// The character stored in place of each NUL.
pub const NUL_REPLACEMENT: char = '\u{FFFD}';

/// `text` with every NUL replaced by [`NUL_REPLACEMENT`].
pub fn without_nul(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// An object with every NUL in its keys and string values replaced, at any depth.
pub fn map_without_nul(mut map: Map<String, Value>) -> Map<String, Value> {
    strip_nul_from_map(&mut map);
    map
}

/// Replaces NULs in place: nothing is allocated unless a NUL is found, which keeps the common
/// case (no NUL anywhere) cheap on the ingest path.
fn strip_nul(value: &mut Value) {
    match value {
        Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
        Value::Array(items) => items.iter_mut().for_each(strip_nul),
        Value::Object(map) => strip_nul_from_map(map),
        _ => {}
    }
}

fn strip_nul_from_map(map: &mut Map<String, Value>) {
    if map.keys().any(|key| key.contains('\0')) {
        *map = std::mem::take(map).into_iter().map(|(key, value)| (without_nul(key), value)).collect();
    }
    map.values_mut().for_each(strip_nul);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_in_nested_keys_and_values_is_replaced() {
        let Value::Object(map) = json!({"a\u{0}b": ["x\u{0}", {"k": "\u{0}"}], "n": 1}) else {
            unreachable!()
        };
        let cleaned = Value::Object(map_without_nul(map));
        assert_eq!(cleaned, json!({"a\u{FFFD}b": ["x\u{FFFD}", {"k": "\u{FFFD}"}], "n": 1}));
        assert!(!cleaned.to_string().contains("\\u0000"));
    }

    #[test]
    fn text_without_nul_is_unchanged() {
        assert_eq!(without_nul("plain".to_owned()), "plain");
    }
}
