//! The deterministic `signal_id`s of OTLP records, which make a retried export idempotent. One
//! definition, read by the mapping that stores records and by the canary that checks them.

use uuid::Uuid;

/// Namespaces of the version-5 signal ids, one per record kind.
const SPAN_NAMESPACE: Uuid = Uuid::from_u128(0x2f4e_9c1a_7b3d_4e8f_a1c2_5d6e_7f80_9a1b);
const LOG_NAMESPACE: Uuid = Uuid::from_u128(0x8a3b_1c2d_4e5f_4a6b_9c7d_0e1f_2a3b_4c5d);
const POINT_NAMESPACE: Uuid = Uuid::from_u128(0x5c6d_7e8f_9a0b_4c1d_8e2f_3a4b_5c6d_7e8f);

/// A span is identified by its trace and span ids.
pub fn span_signal_id(trace_id: &[u8], span_id: &[u8]) -> Uuid {
    Uuid::new_v5(&SPAN_NAMESPACE, &[trace_id, span_id].concat())
}

/// A log record is identified by its protobuf-encoded content within its resource and scope:
/// `[resource, scope, record]`, each encoded on its own (an absent resource or scope as no
/// bytes).
pub fn log_signal_id(parts: &[&[u8]]) -> Uuid {
    Uuid::new_v5(&LOG_NAMESPACE, &framed(parts))
}

/// A data point is identified by its encoded content within its metric, resource and scope:
/// `[resource, scope, metric without its data, point]`.
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
    fn signal_ids_are_deterministic_and_content_sensitive() {
        assert_eq!(span_signal_id(&[1; 16], &[2; 8]), span_signal_id(&[1; 16], &[2; 8]));
        assert_ne!(span_signal_id(&[1; 16], &[2; 8]), span_signal_id(&[1; 16], &[3; 8]));
        let (a, b): (&[u8], &[u8]) = (b"a", b"bc");
        assert_eq!(log_signal_id(&[a, b]), log_signal_id(&[b"a", b"bc"]));
        assert_ne!(log_signal_id(&[a, b]), log_signal_id(&[b, a]));
        assert_ne!(log_signal_id(&[b"ab", b"c"]), log_signal_id(&[a, b]), "parts are framed");
        assert_ne!(log_signal_id(&[a]), point_signal_id(&[a]), "kinds have their own namespaces");
    }

    #[test]
    fn ids_stay_what_stored_signals_carry() {
        // A changed derivation would store every retried export of an upgrade twice: this is
        // the id of tests/fixtures/api_shapes.json's span.
        let trace =
            [0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c];
        let span = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(span_signal_id(&trace, &span).to_string(), "fc12c379-e4df-5523-a21b-6ac6ac01b208");
    }
}
