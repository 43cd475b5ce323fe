//! How much one stored signal may carry (`ATTRIBUTE_COUNT_LIMIT`, `VALUE_LENGTH_LIMIT`); the
//! mapping applies the limits as it writes payloads.

/// `ATTRIBUTE_COUNT_LIMIT` and `VALUE_LENGTH_LIMIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueLimits {
    /// Entries kept per attribute map (the OpenTelemetry SDKs' default is 128).
    pub attribute_count: usize,
    /// Bytes kept per string value, cut at a character boundary.
    pub value_length: usize,
}

impl ValueLimits {
    /// The documented defaults (128 attributes, 64 KiB per value).
    pub const DEFAULT: ValueLimits = ValueLimits { attribute_count: 128, value_length: 64 * 1024 };
}

impl Default for ValueLimits {
    fn default() -> Self {
        ValueLimits::DEFAULT
    }
}
