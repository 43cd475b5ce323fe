//! Trace and span ids as OTLP carries them; the `signal_id`s derived from them are
//! [`crate::model::signal_id`]'s.

pub use crate::model::signal_id::{log_signal_id, point_signal_id, span_signal_id};

/// Lower-case hex of an id (one allocation: this runs several times per span).
pub fn hex(id: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(id.len() * 2);
    for byte in id {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    text
}

/// A valid id: exactly `len` bytes and not all zero (the spec's "invalid" otherwise).
pub fn valid_id(id: &[u8], len: usize) -> bool {
    id.len() == len && id.iter().any(|b| *b != 0)
}

/// Why an id is invalid, for the rejection message; `None` when valid.
pub fn id_problem(what: &str, id: &[u8], len: usize) -> Option<String> {
    if id.len() != len {
        Some(format!("{what} must be {len} bytes, got {}", id.len()))
    } else if id.iter().all(|b| *b == 0) {
        Some(format!("{what} is all zeros"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lower_hex_and_validated() {
        assert_eq!(hex(&[0x5B, 0x8E]), "5b8e");
        assert!(valid_id(&[1; 16], 16));
        assert!(!valid_id(&[0; 16], 16));
        assert!(!valid_id(&[1; 4], 16));
        assert_eq!(id_problem("trace_id", &[1; 4], 16).unwrap(), "trace_id must be 16 bytes, got 4");
    }
}
