//! Writing a payload's JSON text directly, with the value limits and the NUL rule applied as it
//! is written: no intermediate tree, one pass, one buffer per payload.
//!
//! The text is what [`crate::mapping::limits::apply`] and [`crate::mapping::text`] would make of
//! the same payload built as a tree; the mapping tests compare the two.

use std::borrow::Cow;

use serde::Serializer;

use super::limits::{floor_char_boundary, Trimmed, ValueLimits};
use super::text::NUL_REPLACEMENT;

#[derive(Clone, Copy)]
struct Level {
    first: bool,
    after_key: bool,
}

/// A JSON writer for one payload (or one shared part).
pub struct JsonOut {
    buf: Vec<u8>,
    levels: Vec<Level>,
    pub limits: ValueLimits,
    pub trimmed: Trimmed,
}

impl JsonOut {
    pub fn new(limits: ValueLimits, capacity: usize) -> JsonOut {
        JsonOut {
            buf: Vec::with_capacity(capacity),
            levels: Vec::with_capacity(8),
            limits,
            trimmed: Trimmed::default(),
        }
    }

    /// The text written. Everything written is UTF-8 (strings come from `&str`).
    pub fn finish(self) -> String {
        String::from_utf8(self.buf).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    fn separate(&mut self) {
        if let Some(level) = self.levels.last_mut() {
            if level.after_key {
                level.after_key = false;
            } else if level.first {
                level.first = false;
            } else {
                self.buf.push(b',');
            }
        }
    }

    pub fn begin_object(&mut self) {
        self.separate();
        self.buf.push(b'{');
        self.levels.push(Level { first: true, after_key: false });
    }

    pub fn end_object(&mut self) {
        self.levels.pop();
        self.buf.push(b'}');
    }

    pub fn begin_array(&mut self) {
        self.separate();
        self.buf.push(b'[');
        self.levels.push(Level { first: true, after_key: false });
    }

    pub fn end_array(&mut self) {
        self.levels.pop();
        self.buf.push(b']');
    }

    /// An object key (free text: NULs replaced, never cut).
    pub fn key(&mut self, key: &str) {
        self.separate();
        self.escaped(&without_nul(key));
        self.buf.push(b':');
        if let Some(level) = self.levels.last_mut() {
            level.after_key = true;
        }
    }

    /// A string value: NULs replaced, cut to the value length limit at a character boundary.
    pub fn str(&mut self, value: &str) {
        self.separate();
        let (value, cut) = stored_text(value, self.limits.value_length);
        if cut {
            self.trimmed.values_truncated += 1;
        }
        self.escaped(&value);
    }

    pub fn u64(&mut self, value: u64) {
        self.separate();
        self.buf.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    pub fn i64(&mut self, value: i64) {
        self.separate();
        self.buf.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// A finite double as a number, a non-finite one as its proto3 JSON string.
    pub fn f64(&mut self, value: f64) {
        if value.is_finite() {
            self.separate();
            self.buf.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
        } else if value.is_nan() {
            self.str("NaN");
        } else if value > 0.0 {
            self.str("Infinity");
        } else {
            self.str("-Infinity");
        }
    }

    pub fn bool(&mut self, value: bool) {
        self.separate();
        self.buf.extend_from_slice(if value { b"true" } else { b"false" });
    }

    pub fn null(&mut self) {
        self.separate();
        self.buf.extend_from_slice(b"null");
    }

    /// `key: "value"` in one call.
    pub fn field_str(&mut self, key: &str, value: &str) {
        self.key(key);
        self.str(value);
    }

    /// A value already encoded as JSON by this module (a nested part written separately).
    pub fn raw(&mut self, json: &str) {
        self.separate();
        self.buf.extend_from_slice(json.as_bytes());
    }

    fn escaped(&mut self, text: &str) {
        // serde_json's escaping, so the text is byte for byte what a serialised tree would be.
        let mut serializer = serde_json::Serializer::new(&mut self.buf);
        let _ = serializer.serialize_str(text);
    }
}

/// A string value as it is stored: NULs replaced, cut to `limit` bytes at a character boundary;
/// and whether it was cut. The one definition, for the text written and the facts taken.
pub fn stored_text(text: &str, limit: usize) -> (Cow<'_, str>, bool) {
    let text = without_nul(text);
    if text.len() <= limit {
        return (text, false);
    }
    let cut = floor_char_boundary(&text, limit);
    let kept = match text {
        Cow::Borrowed(text) => Cow::Borrowed(&text[..cut]),
        Cow::Owned(mut text) => {
            text.truncate(cut);
            Cow::Owned(text)
        }
    };
    (kept, true)
}

/// `text` with every NUL replaced, borrowed when there is none (the common case).
pub fn without_nul(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', &NUL_REPLACEMENT.to_string()))
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn nested_containers_get_their_commas_and_strings_their_escapes() {
        let mut out = JsonOut::new(ValueLimits::default(), 64);
        out.begin_object();
        out.field_str("a\0", "x\"y\n\0");
        out.key("list");
        out.begin_array();
        out.i64(-1);
        out.f64(1.5);
        out.f64(f64::NAN);
        out.null();
        out.begin_object();
        out.end_object();
        out.end_array();
        out.key("b");
        out.bool(true);
        out.end_object();
        let text = out.finish();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            json!({"a\u{FFFD}": "x\"y\n\u{FFFD}", "list": [-1, 1.5, "NaN", null, {}], "b": true})
        );
    }

    #[test]
    fn long_strings_are_cut_and_counted() {
        let mut out = JsonOut::new(ValueLimits { attribute_count: 128, value_length: 7 }, 16);
        out.str(&"é".repeat(10));
        assert_eq!(out.trimmed.values_truncated, 1);
        assert_eq!(out.finish(), "\"ééé\"");
    }
}
