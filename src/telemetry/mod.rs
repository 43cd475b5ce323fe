//! Our own logs (`tracing` to standard error, as text or JSON lines) and metrics.

pub mod episodes;
pub mod metrics;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `filter` is a validated directive (see `Config::log_filter`).
/// Calling it twice (tests) keeps the first subscriber.
pub fn init(filter: &str, format: LogFormat) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = format == LogFormat::Text
        && colour_wanted(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Colour escapes only for a person at a terminal: a file, a pipe or a journal gets plain
/// text. `NO_COLOR` set to anything but the empty string turns colour off (no-color.org).
fn colour_wanted(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::colour_wanted;

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        assert!(colour_wanted(true, None));
        assert!(!colour_wanted(false, None), "a file or a pipe");
        assert!(!colour_wanted(true, Some(OsStr::new("1"))));
        assert!(colour_wanted(true, Some(OsStr::new(""))), "an empty NO_COLOR is unset");
    }
}
