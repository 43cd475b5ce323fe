//! Trace and span ids, and the deterministic `signal_id`s that make retried exports idempotent.

use uuid::Uuid;

/// Namespaces of the version-5 signal ids, one per record kind.
const SPAN_NAMESPACE: Uuid = Uuid::from_u128(0x2f4e_9c1a_7b3d_4e8f_a1c2_5d6e_7f80_9a1b);
const LOG_NAMESPACE: Uuid = Uuid::from_u128(0x8a3b_1c2d_4e5f_4a6b_9c7d_0e1f_2a3b_4c5d);
const POINT_NAMESPACE: Uuid = Uuid::from_u128(0x5c6d_7e8f_9a0b_4c1d_8e2f_3a4b_5c6d_7e8f);

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

/// A span is identified by its trace and span ids.
pub fn span_signal_id(trace_id: &[u8], span_id: &[u8]) -> Uuid {
    Uuid::new_v5(&SPAN_NAMESPACE, &[trace_id, span_id].concat())
}

/// A log record is identified by its encoded content, within its resource and scope (each
/// part protobuf-encoded by the caller).
pub fn log_signal_id(parts: &[&[u8]]) -> Uuid {
    Uuid::new_v5(&LOG_NAMESPACE, &framed(parts))
}

/// A data point is identified by its encoded content, within its metric, resource and scope.
pub fn point_signal_id(parts: &[&[u8]]) -> Uuid {
    Uuid::new_v5(&POINT_NAMESPACE, &framed(parts))
}

/// Length-prefixed concatenation, so that no two different part lists give the same bytes.
fn framed(parts: &[&[u8]]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
    for part in parts {
        bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
        bytes.extend_from_slice(part);
    }
    bytes
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

    #[test]
    fn signal_ids_are_deterministic_and_content_sensitive() {
        assert_eq!(span_signal_id(&[1; 16], &[2; 8]), span_signal_id(&[1; 16], &[2; 8]));
        assert_ne!(span_signal_id(&[1; 16], &[2; 8]), span_signal_id(&[1; 16], &[3; 8]));
        let (a, b): (&[u8], &[u8]) = (b"a", b"bc");
        assert_eq!(log_signal_id(&[a, b]), log_signal_id(&[b"a", b"bc"]));
        assert_ne!(log_signal_id(&[a, b]), log_signal_id(&[b, a]));
        assert_ne!(log_signal_id(&[b"ab", b"c"]), log_signal_id(&[a, b]), "parts are framed");
        assert_ne!(log_signal_id(&[a]), point_signal_id(&[a]), "kinds have their own namespaces");
    }
}
