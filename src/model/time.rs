//! Timestamps: the lenient parser legacy clients need, and the one output format of the API.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde::Serializer;

/// Why a value is not a timestamp; the text is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTimestamp(pub &'static str);

/// Parses what Pydantic accepted for a `datetime` field, so legacy clients keep working:
/// RFC 3339 / ISO 8601 with an offset (`+00:00` from Python's `isoformat()`, or `Z`), a naive
/// date-time (taken as UTC), a bare date (midnight UTC), or a Unix time in seconds
/// (milliseconds when larger than 2e10, as Pydantic does).
pub fn parse_timestamp_str(text: &str) -> Result<DateTime<Utc>, InvalidTimestamp> {
    let text = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return in_supported_range(dt.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(dt) = DateTime::parse_from_str(text, format) {
            return in_supported_range(dt.with_timezone(&Utc));
        }
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return in_supported_range(Utc.from_utc_datetime(&naive));
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        if let Some(midnight) = date.and_hms_opt(0, 0, 0) {
            return in_supported_range(Utc.from_utc_datetime(&midnight));
        }
    }
    if is_numeric_timestamp(text) {
        if let Ok(number) = text.parse::<f64>() {
            return parse_timestamp_number(number);
        }
    }
    Err(InvalidTimestamp("invalid datetime format"))
}

/// Unix seconds or milliseconds as text, as read ([`is_numeric_timestamp`]): every value it
/// matches lies in years 1 to 9999 (up to 14 digits, 13 when negative).
pub const NUMERIC_TIMESTAMP_PATTERN: &str = r"^(\+?[0-9]{1,14}|-[0-9]{1,13})(\.[0-9]{1,6})?$";

/// Whether `text` is a number of [`NUMERIC_TIMESTAMP_PATTERN`]'s form.
fn is_numeric_timestamp(text: &str) -> bool {
    let (sign, digits) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => (1, text),
    };
    let (whole, fraction) = digits.split_once('.').map_or((digits, None), |(w, f)| (w, Some(f)));
    let most = if sign < 0 { 13 } else { 14 };
    let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    (1..=most).contains(&whole.len())
        && all_digits(whole)
        && fraction.is_none_or(|f| (1..=6).contains(&f.len()) && all_digits(f))
}

/// A Unix time in seconds, or in milliseconds when its magnitude exceeds 2e10 (Pydantic's rule).
pub fn parse_timestamp_number(number: f64) -> Result<DateTime<Utc>, InvalidTimestamp> {
    if !number.is_finite() {
        return Err(InvalidTimestamp("timestamp must be a finite number"));
    }
    let seconds = if number.abs() > 2e10 { number / 1000.0 } else { number };
    let whole = seconds.floor();
    let nanos = ((seconds - whole) * 1e9).round().min(999_999_999.0) as u32;
    if whole < i64::MIN as f64 || whole > i64::MAX as f64 {
        return Err(InvalidTimestamp("timestamp out of range"));
    }
    match Utc.timestamp_opt(whole as i64, nanos) {
        chrono::LocalResult::Single(dt) => in_supported_range(dt),
        _ => Err(InvalidTimestamp("timestamp out of range")),
    }
}

// PostgreSQL's timestamptz and every client we serve handle years 1..=9999; outside that, the
// value is almost certainly a unit mistake and is refused rather than stored.
fn in_supported_range(dt: DateTime<Utc>) -> Result<DateTime<Utc>, InvalidTimestamp> {
    use chrono::Datelike;
    if (1..=9999).contains(&dt.year()) {
        Ok(dt)
    } else {
        Err(InvalidTimestamp("timestamp out of range (years 1 to 9999)"))
    }
}

/// `dt` cut to the microsecond, the precision PostgreSQL stores: a signal's time then compares
/// equal to the one read back (OTLP times come in nanoseconds).
pub fn at_stored_precision(dt: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Timelike;
    let nanos = dt.nanosecond();
    dt.with_nanosecond(nanos - nanos % 1_000).unwrap_or(dt)
}

/// `span` before `now`, or the earliest time chrono represents if that is further back.
pub fn before(now: DateTime<Utc>, span: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(span)
        .ok()
        .and_then(|span| now.checked_sub_signed(span))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The API's one timestamp format: RFC 3339 in UTC with a `Z`, fractional seconds only when present.
pub fn format_timestamp(dt: &DateTime<Utc>) -> String {
    dt.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `serialize_with` adapter for [`format_timestamp`].
pub fn serialize<S: Serializer>(dt: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_timestamp(dt))
}

/// `serialize_with` adapter for optional timestamps (`null` when absent).
pub fn serialize_option<S: Serializer>(dt: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
    match dt {
        Some(dt) => serialize(dt, serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn python_isoformat_with_offset_is_accepted() {
        assert_eq!(
            parse_timestamp_str("2024-05-01T10:20:30.123456+00:00").unwrap(),
            utc("2024-05-01T10:20:30.123456Z")
        );
        assert_eq!(parse_timestamp_str("2024-05-01T12:20:30+02:00").unwrap(), utc("2024-05-01T10:20:30Z"));
    }

    #[test]
    fn naive_and_space_separated_forms_are_taken_as_utc() {
        assert_eq!(parse_timestamp_str("2024-05-01T10:20:30.5").unwrap(), utc("2024-05-01T10:20:30.5Z"));
        assert_eq!(parse_timestamp_str("2024-05-01 10:20:30").unwrap(), utc("2024-05-01T10:20:30Z"));
        assert_eq!(parse_timestamp_str("2024-05-01").unwrap(), utc("2024-05-01T00:00:00Z"));
    }

    #[test]
    fn unix_seconds_and_milliseconds_follow_pydantic() {
        assert_eq!(parse_timestamp_number(1_714_558_830.0).unwrap(), utc("2024-05-01T10:20:30Z"));
        assert_eq!(parse_timestamp_number(1_714_558_830_250.0).unwrap(), utc("2024-05-01T10:20:30.250Z"));
        assert_eq!(parse_timestamp_str("1714558830").unwrap(), utc("2024-05-01T10:20:30Z"));
    }

    #[test]
    fn garbage_and_out_of_range_values_are_refused() {
        assert!(parse_timestamp_str("yesterday").is_err());
        assert!(parse_timestamp_str("").is_err());
        assert!(parse_timestamp_number(f64::NAN).is_err());
        assert!(parse_timestamp_number(f64::INFINITY).is_err());
        assert!(parse_timestamp_number(1e300).is_err());
        assert!(parse_timestamp_str("0000-01-01T00:00:00Z").is_err());
    }

    #[test]
    fn stored_precision_is_the_microsecond_floor_before_and_after_the_epoch() {
        let ns = |secs: i64, nanos: u32| Utc.timestamp_opt(secs, nanos).unwrap();
        assert_eq!(at_stored_precision(ns(1_714_558_830, 123_456_789)), ns(1_714_558_830, 123_456_000));
        assert_eq!(at_stored_precision(ns(-100, 999_999_999)), ns(-100, 999_999_000));
        let exact = ns(1_714_558_830, 5_000);
        assert_eq!(at_stored_precision(exact), exact);
    }

    #[test]
    fn output_uses_z_and_only_needed_fraction_digits() {
        assert_eq!(format_timestamp(&utc("2024-05-01T10:20:30Z")), "2024-05-01T10:20:30Z");
        assert_eq!(format_timestamp(&utc("2024-05-01T10:20:30.123456Z")), "2024-05-01T10:20:30.123456Z");
    }
}
