//! Parsers for setting values. Each returns the reason a value is wrong, in words an operator
//! can act on; the caller adds the setting's name.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// `host:port`; `localhost` is accepted and resolved to loopback.
pub fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Some(port) = text.strip_prefix("localhost:") {
        return socket_addr(&format!("127.0.0.1:{port}"));
    }
    SocketAddr::from_str(text)
        .map_err(|_| format!("{text:?} is not an address of the form host:port, e.g. 0.0.0.0:8000"))
}

/// A whole number within `min..=max`.
pub fn bounded_integer(text: &str, min: u64, max: u64) -> Result<u64, String> {
    let value: u64 = text.trim().parse().map_err(|_| format!("{text:?} is not a whole number"))?;
    if value < min || value > max {
        return Err(format!("{value} is outside the allowed range {min} to {max}"));
    }
    Ok(value)
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`, any case).
pub fn boolean(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        other => Err(format!("{other:?} is not true or false")),
    }
}

pub fn seconds(text: &str, min: u64, max: u64) -> Result<Duration, String> {
    bounded_integer(text, min, max).map(Duration::from_secs)
}

/// A duration such as `7d`, `36h`, `90m`, `30s`, `2w`, or parts of them together (`1d12h`).
/// With `zero_is_forever`, a bare `0` means "no limit" and gives `None`.
pub fn duration(text: &str, zero_is_forever: bool) -> Result<Option<Duration>, String> {
    let trimmed = text.trim();
    let example = "a duration like 7d, 36h, 90m or 1d12h";
    if trimmed == "0" && zero_is_forever {
        return Ok(None);
    }
    let mut total: u64 = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (digits, after) = rest.split_at(digits_end);
        let unit_end = after.find(|c: char| c.is_ascii_digit()).unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let seconds_per: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            "" => return Err(format!("{text:?} needs a unit: {example} (0 keeps forever)")),
            _ => return Err(format!("{text:?} is not {example}")),
        };
        let count: u64 = digits.parse().map_err(|_| format!("{text:?} is not {example}"))?;
        total = count
            .checked_mul(seconds_per)
            .and_then(|part| total.checked_add(part))
            .filter(|t| *t <= 100 * 365 * 86_400)
            .ok_or_else(|| format!("{text:?} is longer than 100 years"))?;
        rest = next;
    }
    if total == 0 {
        return Err(if zero_is_forever {
            format!("{text:?} is empty; use {example}, or 0 to keep forever")
        } else {
            format!("{text:?} must be longer than zero")
        });
    }
    Ok(Some(Duration::from_secs(total)))
}

/// A byte count: `4194304`, `4MiB`, `512KiB`, `1GiB` (binary units; `K`/`M`/`G` mean the same).
pub fn byte_size(text: &str) -> Result<usize, String> {
    let bytes = bytes(text, "4194304, 512KiB or 4MiB")?;
    if !(1024..=(4u64 << 30)).contains(&bytes) {
        return Err(format!("{text:?} must be between 1KiB and 4GiB"));
    }
    usize::try_from(bytes).map_err(|_| format!("{text:?} is too large for this machine"))
}

/// A size of storage (`500GB`, `2TB`, `750MiB`: K, M, G, T are powers of 1024), from 1 MiB.
pub fn storage_size(text: &str) -> Result<u64, String> {
    let bytes = bytes(text, "500GB, 2TB or 750MB")?;
    if bytes < 1 << 20 {
        return Err(format!("{text:?} is less than 1MiB"));
    }
    Ok(bytes)
}

fn bytes(text: &str, examples: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let not_a_size = || format!("{text:?} is not a size like {examples}");
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(not_a_size()),
    };
    let count: u64 = digits.parse().map_err(|_| not_a_size())?;
    count.checked_mul(multiplier).ok_or_else(|| format!("{text:?} is too large"))
}

/// Python logging names (and tracing's) mapped to a tracing filter; anything containing `=` is
/// taken as a tracing filter directive such as `info,prodsentinel=debug`.
pub fn log_filter(text: &str) -> Result<String, String> {
    let level = match text.trim().to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARN" | "WARNING" => "warn",
        "ERROR" | "CRITICAL" | "FATAL" => "error",
        "OFF" => "off",
        _ if text.contains('=') => {
            return tracing_subscriber::EnvFilter::try_new(text.trim())
                .map(|_| text.trim().to_owned())
                .map_err(|why| format!("{text:?} is not a valid filter directive: {why}"));
        }
        _ => {
            return Err(format!(
                "{text:?} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL (or a filter directive)"
            ))
        }
    };
    Ok(level.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_plain_bytes_and_binary_units() {
        assert_eq!(byte_size("4MiB"), Ok(4 << 20));
        assert_eq!(byte_size("4194304"), Ok(4 << 20));
        assert_eq!(byte_size("512 KiB"), Ok(512 << 10));
        assert_eq!(byte_size("1g"), Ok(1 << 30));
        assert!(byte_size("4 parsecs").is_err());
        assert!(byte_size("12").is_err(), "below the 1KiB floor");
        assert!(byte_size("-1").is_err());
        assert!(byte_size("99999999999999999999999GiB").is_err());
    }

    #[test]
    fn addresses_need_host_and_port() {
        assert_eq!(socket_addr("0.0.0.0:8000").unwrap().port(), 8000);
        assert_eq!(socket_addr("localhost:9").unwrap().to_string(), "127.0.0.1:9");
        assert_eq!(socket_addr("[::1]:4317").unwrap().port(), 4317);
        assert!(socket_addr("8000").is_err());
        assert!(socket_addr("0.0.0.0:99999").is_err());
    }

    #[test]
    fn log_levels_accept_python_names() {
        assert_eq!(log_filter("WARNING").unwrap(), "warn");
        assert_eq!(log_filter("critical").unwrap(), "error");
        assert_eq!(log_filter("info,prodsentinel=debug").unwrap(), "info,prodsentinel=debug");
        assert!(log_filter("loud").is_err());
    }

    #[test]
    fn durations_take_units_and_zero_means_forever() {
        assert_eq!(duration("7d", true), Ok(Some(Duration::from_secs(7 * 86_400))));
        assert_eq!(duration("36h", true), Ok(Some(Duration::from_secs(36 * 3_600))));
        assert_eq!(duration("1d12h", false), Ok(Some(Duration::from_secs(36 * 3_600))));
        assert_eq!(duration(" 90m ", false), Ok(Some(Duration::from_secs(5_400))));
        assert_eq!(duration("2w", true), Ok(Some(Duration::from_secs(14 * 86_400))));
        assert_eq!(duration("0", true), Ok(None));
        assert!(duration("0", false).is_err(), "zero is not a length");
        assert!(duration("7", true).unwrap_err().contains("needs a unit"));
        assert!(duration("7 days", true).is_err());
        assert!(duration("0d", true).is_err());
        assert!(duration("999999w", true).unwrap_err().contains("100 years"));
        assert!(duration("", true).is_err());
    }

    #[test]
    fn integers_are_range_checked() {
        assert_eq!(bounded_integer("16", 1, 1000), Ok(16));
        assert!(bounded_integer("0", 1, 1000).is_err());
        assert!(bounded_integer("ten", 1, 1000).is_err());
    }
}
