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
    /// Text safe in a URL, microseconds exact (PostgreSQL's precision).
    pub fn encode(&self) -> String {
        let at = self.at.map_or_else(|| "-".to_owned(), |at| at.timestamp_micros().to_string());
        URL_SAFE_NO_PAD.encode(format!("{at}_{}", self.id.simple()))
    }

    /// `None` for anything [`Cursor::encode`] did not produce.
    pub fn decode(text: &str) -> Option<Cursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (at, id) = text.split_once('_')?;
        let id = Uuid::try_parse(id).ok()?;
        let at = match at {
            "-" => None,
            micros => Some(DateTime::from_timestamp_micros(micros.parse().ok()?)?),
        };
        Some(Cursor { at, id })
    }
}

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
        for garbage in
            ["", "x", "!!!", &URL_SAFE_NO_PAD.encode("12_not-a-uuid"), &URL_SAFE_NO_PAD.encode("1e99_")]
        {
            assert_eq!(Cursor::decode(garbage), None, "{garbage}");
        }
    }
}
