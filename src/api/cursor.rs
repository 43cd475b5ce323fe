//! Keyset pagination: an opaque `cursor` naming where the previous page ended, so the next page
//! is read from the index at that point instead of counting past `offset` rows (which gets
//! slower as data grows), and rows arriving meanwhile (newer, hence before the cursor) neither
//! repeat nor shift what follows.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The sort key of the last item of a page: its time (absent for incidents without
/// `detected_at`, which sort last) and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: Option<DateTime<Utc>>,
    pub id: Uuid,
}

impl Cursor {
    /// Text safe in a URL, microseconds exact (PostgreSQL's precision): `<µs since the
    /// epoch>_<id as 32 hex digits>`, or `-_<id>` without a time; exactly the texts
    /// [`PATTERN`] matches.
    pub fn encode(&self) -> String {
        let at = self.at.map_or_else(|| "-".to_owned(), |at| at.timestamp_micros().to_string());
        format!("{at}_{}", self.id.simple())
    }

    /// `None` for a text [`PATTERN`] does not match. The base64 form of earlier releases is
    /// still read, so a dashboard paging across an upgrade keeps its place.
    pub fn decode(text: &str) -> Option<Cursor> {
        Self::decode_plain(text).or_else(|| {
            let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
            Self::decode_plain(&String::from_utf8(bytes).ok()?)
        })
    }

    fn decode_plain(text: &str) -> Option<Cursor> {
        let (at, id) = text.split_once('_')?;
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return None;
        }
        let id = Uuid::try_parse(id).ok()?;
        let at = match at {
            "-" => None,
            micros => {
                let digits = micros.strip_prefix('-').unwrap_or(micros);
                if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                Some(DateTime::from_timestamp_micros(micros.parse().ok()?)?)
            }
        };
        Some(Cursor { at, id })
    }
}

/// What a cursor looks like (the OpenAPI description's pattern): every text it matches is read.
#[cfg(test)]
pub const PATTERN: &str = "^(-|-?[0-9]{1,16})_[0-9a-f]{32}$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_to_the_microsecond_and_garbage_is_refused() {
        let at = DateTime::parse_from_rfc3339("2024-05-01T10:20:30.123456Z").unwrap().to_utc();
        for cursor in [Cursor { at: Some(at), id: Uuid::new_v4() }, Cursor { at: None, id: Uuid::new_v4() }] {
            let text = cursor.encode();
            assert!(text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{text}");
            assert_eq!(Cursor::decode(&text), Some(cursor));
        }
        for garbage in [
            "",
            "x",
            "!!!",
            &URL_SAFE_NO_PAD.encode("12_not-a-uuid"),
            &URL_SAFE_NO_PAD.encode("1e99_"),
            " 12_0123456789abcdef0123456789abcdef",
            "12_0123456789ABCDEF0123456789ABCDEF",
            "12345678901234567_0123456789abcdef0123456789abcdef",
            "+12_0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(Cursor::decode(garbage), None, "{garbage}");
        }
        // The pattern's extremes are read.
        for edge in [
            "9999999999999999_0123456789abcdef0123456789abcdef",
            "-9999999999999999_0123456789abcdef0123456789abcdef",
            "-_00000000000000000000000000000000",
        ] {
            assert!(Cursor::decode(edge).is_some(), "{edge}");
        }
        // Cursors of earlier releases.
        let old = URL_SAFE_NO_PAD.encode(format!("{}_{}", at.timestamp_micros(), Uuid::nil().simple()));
        assert_eq!(Cursor::decode(&old), Some(Cursor { at: Some(at), id: Uuid::nil() }));
    }
}
