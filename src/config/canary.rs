//! The settings of `prodsentinel canary`: flags backed by `CANARY_*` environment variables (and
//! `.env`), so they never clash with the service's own when both read one environment.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::{env_of, invalid_field, parse_log_format, values, ConfigError, LogFormat};
use crate::model::Retention;

/// Writes signals of every type over every transport to a running ProdSentinel, reads them back
/// through its query API and checks every field, forever (or `--cycles` times). Failures are
/// counted on its own /metrics and logged one line each, saying what differed.
#[derive(Debug, Clone, Args)]
#[command(long_about)]
pub struct CanaryArgs {
    /// OTLP/gRPC endpoint of the service (`https://…` for TLS).
    #[arg(long, env = "CANARY_OTLP_GRPC_ENDPOINT", default_value = "http://127.0.0.1:4317")]
    pub otlp_grpc_endpoint: String,

    /// OTLP/HTTP endpoint (the base: `/v1/traces`, `/v1/logs`, `/v1/metrics` are added).
    #[arg(long, env = "CANARY_OTLP_HTTP_ENDPOINT", default_value = "http://127.0.0.1:4318")]
    pub otlp_http_endpoint: String,

    /// API endpoint: legacy ingest (`/ingest/*`) and every read (`/query/*`).
    #[arg(long, env = "CANARY_API_ENDPOINT", default_value = "http://127.0.0.1:8000")]
    pub api_endpoint: String,

    /// Bearer token for ingest (one of the service's INGEST_TOKENS); empty: none sent.
    #[arg(long, env = "CANARY_INGEST_TOKEN", default_value = "", hide_env_values = true)]
    pub ingest_token: String,

    /// Bearer token for reads (one of the service's QUERY_TOKENS); empty: none sent.
    #[arg(long, env = "CANARY_QUERY_TOKEN", default_value = "", hide_env_values = true)]
    pub query_token: String,

    /// PEM file of the CA that signed the service's certificate (a private CA). Empty: the
    /// operating system's roots.
    #[arg(long, env = "CANARY_CA_FILE", default_value = "")]
    pub ca_file: String,

    /// Time between two writes (`15s`, `1m`).
    #[arg(long, env = "CANARY_INTERVAL", default_value = "15s")]
    pub interval: String,

    /// Time between a write and its first read.
    #[arg(long, env = "CANARY_READ_DELAY", default_value = "5s")]
    pub read_delay: String,

    /// How long a signal not yet readable is read again before it is counted missing.
    #[arg(long, env = "CANARY_MAX_WAIT", default_value = "60s")]
    pub max_wait: String,

    /// The service's retention, for the spot checks: one duration for every type (`7d`), or
    /// per type (`trace=7d,log=7d,metric=30d`, the service's defaults); `0` for forever.
    #[arg(long, env = "CANARY_RETENTION", default_value = "trace=7d,log=7d,metric=30d")]
    pub retention: String,

    /// The service's PARTITION_INTERVAL: data lives up to its retention plus one interval.
    #[arg(long, env = "CANARY_PARTITION_INTERVAL", default_value = "1d")]
    pub partition_interval: String,

    /// How long past its retention plus one partition interval a signal may still be read before
    /// it counts as expired late (the service drops partitions every RETENTION_CHECK_SECONDS).
    #[arg(long, env = "CANARY_EXPIRY_GRACE", default_value = "1h")]
    pub expiry_grace: String,

    /// One write in this period is kept for spot checks, read again while its retention runs
    /// and once after it.
    #[arg(long, env = "CANARY_SPOT_CHECK_INTERVAL", default_value = "15m")]
    pub spot_check_interval: String,

    /// Most writes kept for spot checks (the oldest go first): the canary's memory is bounded
    /// by this, however long it runs.
    #[arg(long, env = "CANARY_SPOT_CHECK_MAX", default_value = "10000")]
    pub spot_check_max: String,

    /// Every Nth write carries an error (a span with status ERROR and an exception event), and
    /// its incident is checked (severity high or critical, open): this queues analyses. 0: never.
    #[arg(long, env = "CANARY_ERROR_EVERY", default_value = "0")]
    pub error_every: String,

    /// Where its /metrics is served (`0.0.0.0:9464`); empty: nowhere. Default: 0.0.0.0:9464,
    /// or nowhere with --once or --cycles.
    #[arg(long, env = "CANARY_METRICS_ADDR")]
    pub metrics_addr: Option<String>,

    /// Write one round, check it, print a report and exit: 0 only if every check passed.
    #[arg(long, env = "CANARY_ONCE", num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub once: String,

    /// Write and check N rounds, then report and exit as --once does. 0: run forever.
    #[arg(long, env = "CANARY_CYCLES", default_value = "0")]
    pub cycles: String,

    /// Identifies this canary in what it writes (so canaries and restarts never collide). Empty:
    /// a random one at each start.
    #[arg(long, env = "CANARY_ID", default_value = "")]
    pub id: String,

    /// The service name of what it writes (`<name>` and `<name>-backend`).
    #[arg(long, env = "CANARY_SERVICE_NAME", default_value = "prodsentinel-canary")]
    pub service_name: String,

    /// Timeout of one request.
    #[arg(long, env = "CANARY_REQUEST_TIMEOUT", default_value = "10s")]
    pub request_timeout: String,

    /// Stamp every write this long before now (`90m`): for drills of the service's retention on
    /// a deployment that is not production. 0: now.
    #[arg(long, env = "CANARY_TIME_OFFSET", default_value = "0")]
    pub time_offset: String,

    /// The report of --once/--cycles: `text` (one screen) or `json`.
    #[arg(long, env = "CANARY_REPORT", default_value = "text")]
    pub report: String,

    /// Log level, as the service's LOG_LEVEL.
    #[arg(long, env = "CANARY_LOG_LEVEL", default_value = "INFO")]
    pub log_level: String,

    /// Log line format: `text` or `json`.
    #[arg(long, env = "CANARY_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

/// An endpoint: `http://host:port` or `https://host:port`, without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint(String);

impl Endpoint {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_tls(&self) -> bool {
        self.0.starts_with("https://")
    }

    /// The host name, for TLS.
    pub fn host(&self) -> &str {
        let rest = self.0.split_once("://").map_or(self.0.as_str(), |(_, rest)| rest);
        let authority = rest.split('/').next().unwrap_or_default();
        match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
        }
    }

    fn parse(text: &str) -> Result<Endpoint, String> {
        let text = text.trim().trim_end_matches('/');
        let parsed = url::Url::parse(text).map_err(|why| format!("{text:?} is not a URL: {why}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
            return Err(format!("{text:?} is not an http:// or https:// URL with a host"));
        }
        Ok(Endpoint(text.to_owned()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Text,
    Json,
}

/// Everything the canary needs, checked.
#[derive(Clone)]
pub struct CanarySettings {
    pub otlp_grpc_endpoint: Endpoint,
    pub otlp_http_endpoint: Endpoint,
    pub api_endpoint: Endpoint,
    pub ingest_token: Option<String>,
    pub query_token: Option<String>,
    /// The private CA's PEM, read at start-up.
    pub ca_pem: Option<Vec<u8>>,
    pub interval: Duration,
    pub read_delay: Duration,
    pub max_wait: Duration,
    pub retention: Retention,
    pub partition_interval: Duration,
    pub expiry_grace: Duration,
    pub spot_check_interval: Duration,
    pub spot_check_max: usize,
    pub error_every: Option<u64>,
    pub metrics_addr: Option<SocketAddr>,
    /// `None`: forever.
    pub cycles: Option<u64>,
    pub id: String,
    pub service_name: String,
    pub request_timeout: Duration,
    pub time_offset: Duration,
    pub report: ReportFormat,
    pub log_filter: String,
    pub log_format: LogFormat,
}

impl std::fmt::Debug for CanarySettings {
    // Tokens are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CanarySettings")
            .field("otlp_grpc_endpoint", &self.otlp_grpc_endpoint)
            .field("otlp_http_endpoint", &self.otlp_http_endpoint)
            .field("api_endpoint", &self.api_endpoint)
            .field("ingest_token", &self.ingest_token.is_some())
            .field("query_token", &self.query_token.is_some())
            .field("interval", &self.interval)
            .field("cycles", &self.cycles)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A duration that must be more than zero: as the service's settings (`15s`, `1m`, `1d12h`),
/// or milliseconds (`500ms`).
fn positive(text: &str) -> Result<Duration, String> {
    if let Some(millis) = text.trim().strip_suffix("ms") {
        return match millis.trim().parse::<u64>() {
            Ok(0) | Err(_) => Err(format!("{text:?} is not a duration like 500ms, 15s, 1m or 1d12h")),
            Ok(ms) => Ok(Duration::from_millis(ms)),
        };
    }
    values::duration(text, false).map(|d| d.unwrap_or_default())
}

/// A duration that may be zero.
fn at_least_zero(text: &str) -> Result<Duration, String> {
    match text.trim() {
        "0" => Ok(Duration::ZERO),
        other => positive(other),
    }
}

/// `7d` for every type, or `trace=7d,log=7d,metric=30d` (types left out keep the service's
/// defaults); `0` for forever.
fn parse_retention(text: &str) -> Result<Retention, String> {
    let days = |n: u64| Some(Duration::from_secs(n * 86_400));
    let mut retention = Retention { traces: days(7), logs: days(7), metrics: days(30) };
    if !text.contains('=') {
        let all = values::duration(text, true)?;
        return Ok(Retention { traces: all, logs: all, metrics: all });
    }
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (kind, value) = part.split_once('=').ok_or_else(|| format!("{part:?} is not type=duration"))?;
        let value = values::duration(value, true)?;
        match kind.trim() {
            "trace" | "traces" => retention.traces = value,
            "log" | "logs" => retention.logs = value,
            "metric" | "metrics" => retention.metrics = value,
            other => return Err(format!("{other:?} is not trace, log or metric")),
        }
    }
    Ok(retention)
}

impl CanarySettings {
    /// Checks every value; the first bad one is reported with its setting's name.
    pub fn from_args(args: CanaryArgs) -> Result<CanarySettings, ConfigError> {
        macro_rules! invalid {
            ($field:ident) => {
                invalid_field!(CanaryArgs::augment_args(clap::Command::new("canary")), args.$field)
            };
        }
        let token = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
        let once = values::boolean(&args.once).map_err(invalid!(once))?;
        let cycles = values::bounded_integer(&args.cycles, 0, u64::MAX).map_err(invalid!(cycles))?;
        let cycles = match (once, cycles) {
            (true, 0 | 1) => Some(1),
            (true, _) => return Err(invalid!(cycles)("--once is one cycle".into())),
            (false, 0) => None,
            (false, n) => Some(n),
        };
        let metrics_addr = match (args.metrics_addr.as_deref().map(str::trim), cycles) {
            (Some(""), _) | (None, Some(_)) => None,
            (Some(addr), _) => Some(values::socket_addr(addr).map_err(invalid!(metrics_addr))?),
            (None, None) => Some(SocketAddr::from(([0, 0, 0, 0], 9464))),
        };
        let ca_pem = match args.ca_file.trim() {
            "" => None,
            path => Some(
                std::fs::read(path)
                    .map_err(|why| format!("cannot read {path}: {why}"))
                    .map_err(invalid!(ca_file))?,
            ),
        };
        let id = match args.id.trim() {
            "" => uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            id if id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) => {
                id.to_owned()
            }
            _ => return Err(invalid!(id)("1 to 64 letters, digits, '-', '_' or '.'".into())),
        };
        let interval = positive(&args.interval).map_err(invalid!(interval))?;
        let settings = CanarySettings {
            otlp_grpc_endpoint: Endpoint::parse(&args.otlp_grpc_endpoint)
                .map_err(invalid!(otlp_grpc_endpoint))?,
            otlp_http_endpoint: Endpoint::parse(&args.otlp_http_endpoint)
                .map_err(invalid!(otlp_http_endpoint))?,
            api_endpoint: Endpoint::parse(&args.api_endpoint).map_err(invalid!(api_endpoint))?,
            ingest_token: token(&args.ingest_token),
            query_token: token(&args.query_token),
            ca_pem,
            interval,
            read_delay: at_least_zero(&args.read_delay).map_err(invalid!(read_delay))?,
            max_wait: positive(&args.max_wait).map_err(invalid!(max_wait))?,
            retention: parse_retention(&args.retention).map_err(invalid!(retention))?,
            partition_interval: positive(&args.partition_interval).map_err(invalid!(partition_interval))?,
            expiry_grace: at_least_zero(&args.expiry_grace).map_err(invalid!(expiry_grace))?,
            spot_check_interval: positive(&args.spot_check_interval)
                .map_err(invalid!(spot_check_interval))?,
            spot_check_max: values::bounded_integer(&args.spot_check_max, 1, 1_000_000)
                .map_err(invalid!(spot_check_max))? as usize,
            error_every: match values::bounded_integer(&args.error_every, 0, 1_000_000)
                .map_err(invalid!(error_every))?
            {
                0 => None,
                n => Some(n),
            },
            metrics_addr,
            cycles,
            id,
            service_name: match args.service_name.trim() {
                name if !name.is_empty() && name.len() <= 200 => name.to_owned(),
                _ => return Err(invalid!(service_name)("1 to 200 characters".into())),
            },
            request_timeout: positive(&args.request_timeout).map_err(invalid!(request_timeout))?,
            time_offset: at_least_zero(&args.time_offset).map_err(invalid!(time_offset))?,
            report: match args.report.trim().to_ascii_lowercase().as_str() {
                "text" => ReportFormat::Text,
                "json" => ReportFormat::Json,
                other => return Err(invalid!(report)(format!("{other:?} is neither text nor json"))),
            },
            log_filter: values::log_filter(&args.log_level).map_err(invalid!(log_level))?,
            log_format: parse_log_format(&args.log_format).map_err(invalid!(log_format))?,
        };
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: CanaryArgs,
    }

    fn with(args: &[&str]) -> Result<CanarySettings, ConfigError> {
        let wrapper = Wrapper::try_parse_from(std::iter::once("canary").chain(args.iter().copied()))
            .map_err(|why| ConfigError::new("arguments", why.to_string()))?;
        CanarySettings::from_args(wrapper.args)
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let settings = with(&[]).unwrap();
        assert_eq!(settings.otlp_grpc_endpoint.as_str(), "http://127.0.0.1:4317");
        assert_eq!(settings.api_endpoint.host(), "127.0.0.1");
        assert_eq!(settings.interval, Duration::from_secs(15));
        assert_eq!(settings.read_delay, Duration::from_secs(5));
        assert_eq!(settings.max_wait, Duration::from_secs(60));
        assert_eq!(settings.retention.metrics, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(settings.spot_check_interval, Duration::from_secs(900));
        assert_eq!(settings.error_every, None);
        assert_eq!(settings.cycles, None);
        assert_eq!(settings.metrics_addr, Some("0.0.0.0:9464".parse().unwrap()));
        assert_eq!(settings.id.len(), 12);
        assert_ne!(with(&[]).unwrap().id, settings.id, "a new id at each start");
        let once = with(&["--once"]).unwrap();
        assert_eq!((once.cycles, once.metrics_addr), (Some(1), None));
        let three =
            with(&["--cycles", "3", "--metrics-addr", "127.0.0.1:0", "--read-delay", "250ms"]).unwrap();
        assert_eq!(three.read_delay, Duration::from_millis(250));
        assert_eq!((three.cycles, three.metrics_addr.is_some()), (Some(3), true));
    }

    #[test]
    fn retention_is_one_duration_or_one_per_type() {
        let all = parse_retention("36h").unwrap();
        assert_eq!((all.traces, all.logs, all.metrics), (all.traces, all.traces, all.traces));
        assert_eq!(all.traces, Some(Duration::from_secs(36 * 3600)));
        let mixed = parse_retention("log=1d, metric=0").unwrap();
        assert_eq!(mixed.logs, Some(Duration::from_secs(86_400)));
        assert_eq!(mixed.metrics, None, "0 keeps forever");
        assert_eq!(mixed.traces, Some(Duration::from_secs(7 * 86_400)), "the service's default");
        assert!(parse_retention("span=1d").is_err());
    }

    #[test]
    fn each_bad_value_names_its_setting() {
        let cases: &[(&[&str], &str)] = &[
            (&["--api-endpoint", "localhost:8000"], "CANARY_API_ENDPOINT"),
            (&["--otlp-grpc-endpoint", "grpc://x:4317"], "CANARY_OTLP_GRPC_ENDPOINT"),
            (&["--otlp-http-endpoint", ""], "CANARY_OTLP_HTTP_ENDPOINT"),
            (&["--ca-file", "/nonexistent/ca.pem"], "CANARY_CA_FILE"),
            (&["--interval", "0"], "CANARY_INTERVAL"),
            (&["--read-delay", "soon"], "CANARY_READ_DELAY"),
            (&["--max-wait", "60"], "CANARY_MAX_WAIT"),
            (&["--retention", "a week"], "CANARY_RETENTION"),
            (&["--error-every", "often"], "CANARY_ERROR_EVERY"),
            (&["--metrics-addr", "nowhere"], "CANARY_METRICS_ADDR"),
            (&["--once", "--cycles", "3"], "CANARY_CYCLES"),
            (&["--id", "has space"], "CANARY_ID"),
            (&["--report", "xml"], "CANARY_REPORT"),
            (&["--spot-check-max", "0"], "CANARY_SPOT_CHECK_MAX"),
        ];
        for (args, setting) in cases {
            let error = with(args).expect_err(setting);
            assert_eq!(error.setting, *setting, "{args:?}: {error}");
        }
    }
}
