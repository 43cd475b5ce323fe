//! The Jaeger calls' parameters as the OpenAPI description states them: what each accepts and,
//! by its pattern, what it refuses (400 naming it). Documentation only; `params.rs` reads them.
//! Every parameter may be sent empty or as a bare key (Jaeger UI does), which means absent,
//! except v3's times.

#![allow(dead_code)] // read by the derive macros

use utoipa::IntoParams;

/// `GET /jaeger/api/traces`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// The service whose spans are searched (any, when absent).
    pub service: Option<String>,
    /// The spans' operation (span name; `(unnamed)` for spans without one).
    pub operation: Option<String>,
    /// Tags every matching span carries (in its attributes, resource, scope, events, the
    /// mapped tags such as `error` and `span.kind`, or a log written inside it): a JSON object
    /// of strings, numbers and booleans (`{"http.status_code":"500"}`), or `key=value` pairs
    /// separated by spaces.
    #[param(value_type = Option<String>)]
    pub tags: Option<String>,
    /// Shortest span duration: `300ms`, `1.2s`, `1h30m` (units ns, us, ms, s, m, h, d).
    #[param(
        pattern = r"^(0|(([0-9]{1,4}(\.[0-9]{0,9})?|\.[0-9]{1,9})(ns|us|µs|μs|ms|s|m|h|d)){1,4})?$",
        rename = "minDuration"
    )]
    pub min_duration: Option<String>,
    /// Longest span duration.
    #[param(
        pattern = r"^(0|(([0-9]{1,4}(\.[0-9]{0,9})?|\.[0-9]{1,9})(ns|us|µs|μs|ms|s|m|h|d)){1,4})?$",
        rename = "maxDuration"
    )]
    pub max_duration: Option<String>,
    /// Start of the range, microseconds since the epoch (default: `end` minus `lookback`).
    #[param(pattern = "^([0-9]{1,17})?$")]
    pub start: Option<String>,
    /// End of the range, microseconds since the epoch (default: now). Before `start`: nothing.
    #[param(pattern = "^([0-9]{1,17})?$")]
    pub end: Option<String>,
    /// Reach before `end` when `start` is not given (`1h`, the default; `2d`; `custom`).
    #[param(
        pattern = r"^(custom|0|(([0-9]{1,4}(\.[0-9]{0,9})?|\.[0-9]{1,9})(ns|us|µs|μs|ms|s|m|h|d)){1,4})?$"
    )]
    pub lookback: Option<String>,
    /// Traces returned, most recent first: default 100, at most 1500 (more is read as 1500).
    #[param(pattern = "^([0-9]{1,4})?$")]
    pub limit: Option<String>,
    /// Traces by id instead of a search (repeated); each not found is an error entry.
    #[param(rename = "traceID")]
    pub trace_id: Option<Vec<String>>,
}

/// `GET /jaeger/api/traces/{trace_id}`: accepted and checked; the lookup by id does not need them.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TraceRangeQuery {
    /// Microseconds since the epoch.
    #[param(pattern = "^([0-9]{1,17})?$")]
    pub start: Option<String>,
    #[param(pattern = "^([0-9]{1,17})?$")]
    pub end: Option<String>,
}

/// `GET /jaeger/api/operations`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OperationsQuery {
    #[param(min_length = 1)]
    pub service: String,
    #[param(pattern = "^(server|client|producer|consumer|internal)?$", rename = "spanKind")]
    pub span_kind: Option<String>,
}

/// `GET /jaeger/api/v3/operations`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct V3OperationsQuery {
    #[param(min_length = 1)]
    pub service: String,
    #[param(pattern = "^(server|client|producer|consumer|internal)?$")]
    pub span_kind: Option<String>,
}

/// `GET /jaeger/api/dependencies`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DependenciesQuery {
    /// End of the range, milliseconds since the epoch (default: now).
    #[param(pattern = "^([0-9]{1,14})?$", rename = "endTs")]
    pub end_ts: Option<String>,
    /// Reach before `endTs`, milliseconds (default: a day).
    #[param(pattern = "^([0-9]{1,14})?$")]
    pub lookback: Option<String>,
}

/// `GET /jaeger/api/v3/traces`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct V3SearchQuery {
    /// Any service when absent.
    #[param(rename = "query.service_name")]
    pub service_name: Option<String>,
    #[param(rename = "query.operation_name")]
    pub operation_name: Option<String>,
    /// As `tags` of the v1 search.
    #[param(rename = "query.attributes", value_type = Option<String>)]
    pub attributes: Option<String>,
    #[param(
        pattern = r"^(0|(([0-9]{1,4}(\.[0-9]{0,9})?|\.[0-9]{1,9})(ns|us|µs|μs|ms|s|m|h|d)){1,4})?$",
        rename = "query.duration_min"
    )]
    pub duration_min: Option<String>,
    #[param(
        pattern = r"^(0|(([0-9]{1,4}(\.[0-9]{0,9})?|\.[0-9]{1,9})(ns|us|µs|μs|ms|s|m|h|d)){1,4})?$",
        rename = "query.duration_max"
    )]
    pub duration_max: Option<String>,
    /// RFC 3339 (default: an hour before `query.start_time_max`).
    #[param(rename = "query.start_time_min")]
    pub start_time_min: Option<chrono::DateTime<chrono::Utc>>,
    /// RFC 3339 (default: now). Before `query.start_time_min`: nothing.
    #[param(rename = "query.start_time_max")]
    pub start_time_max: Option<chrono::DateTime<chrono::Utc>>,
    /// Traces returned: default 20, at most 1500 (more is read as 1500).
    #[param(pattern = "^([0-9]{1,4})?$", rename = "query.search_depth")]
    pub search_depth: Option<String>,
}

#[cfg(test)]
mod tests {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::IntoParams;

    fn pattern<P: IntoParams>(name: &str) -> serde_json::Value {
        let params = P::into_params(|| Some(ParameterIn::Query));
        let param = params.iter().find(|p| p.name == name).expect("described");
        serde_json::to_value(&param.schema).unwrap()["pattern"].clone()
    }

    #[test]
    fn the_duration_pattern_described_is_the_one_read() {
        let read = super::super::params::DURATION_PATTERN;
        for name in ["minDuration", "maxDuration"] {
            assert_eq!(pattern::<super::SearchQuery>(name), read);
        }
        for name in ["query.duration_min", "query.duration_max"] {
            assert_eq!(pattern::<super::V3SearchQuery>(name), read);
        }
        assert_eq!(pattern::<super::SearchQuery>("lookback"), read.replacen("^(0|", "^(custom|0|", 1));
    }
}
