//! Typed configuration: read once at start-up from flags, the environment and `.env`, checked
//! in full before anything starts. Secrets never appear in `Debug` output or logs.

mod canary;
mod cli;
mod database;
mod pipeline;
mod tls_files;
mod tokens;
mod trace_viewer;
mod values;

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use crate::model::{IncidentSeverity, Lifecycle, PartitionInterval, Retention, Rules, ValueLimits};

pub use canary::{CanaryArgs, CanarySettings, Endpoint, ReportFormat};
pub use cli::{Cli, Command};
pub use database::{DatabaseConfig, DatabaseTls, RootCerts, SslMode};
pub use pipeline::PipelineSettings;
pub use tls_files::{TlsFiles, TlsSettingError};
pub use tokens::Tokens;
pub use trace_viewer::TraceViewerUrl;

/// A setting with a bad value: which one, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {setting}: {reason}")]
pub struct ConfigError {
    /// The environment variable, or what else was wrong (`arguments`, `.env`).
    pub setting: Cow<'static, str>,
    pub reason: String,
}

impl ConfigError {
    fn new(setting: &'static str, reason: String) -> ConfigError {
        ConfigError { setting: Cow::Borrowed(setting), reason }
    }
}

impl From<TlsSettingError> for ConfigError {
    fn from(error: TlsSettingError) -> Self {
        ConfigError::new(error.setting, error.reason)
    }
}

/// The environment variable the declaration of `field` gives it (cli.rs, canary.rs): a
/// setting's name is written there and nowhere else.
fn env_of(command: clap::Command, field: &str) -> Cow<'static, str> {
    let env = command.get_arguments().find(|arg| arg.get_id() == field).and_then(|arg| arg.get_env());
    Cow::Owned(env.map_or_else(|| field.to_ascii_uppercase(), |env| env.to_string_lossy().into_owned()))
}

/// `|reason| ConfigError` for a bad value of `$args.$field` (of the clap command `$command`),
/// named by [`env_of`]. The field is referred to as a field, so the compiler checks it exists.
macro_rules! invalid_field {
    ($command:expr, $args:ident . $field:ident) => {{
        let _ = &$args.$field;
        move |reason: String| ConfigError { setting: env_of($command, stringify!($field)), reason }
    }};
}
use invalid_field;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Which browser origins may call the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    Any,
    List(Vec<String>),
}

/// The Redis URL, kept whole for clients but printed without its password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // redis://user:secret@host -> redis://user:***@host
        match (self.0.find("://"), self.0.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                let credentials = &self.0[scheme_end + 3..at];
                let user = credentials.split(':').next().unwrap_or_default();
                write!(f, "{}{user}:***{}", &self.0[..scheme_end + 3], &self.0[at..])
            }
            _ => f.write_str(&self.0),
        }
    }
}

/// Everything the service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    /// `QUERY_DATABASE_URL`: the replica the query API reads, with the primary's pool settings.
    pub query_database: Option<DatabaseConfig>,
    pub redis_url: RedisUrl,
    /// A tracing filter directive (`info`, `warn,prodsentinel=debug`, …).
    pub log_filter: String,
    pub log_format: LogFormat,
    pub api_addr: SocketAddr,
    pub otlp_grpc_addr: SocketAddr,
    pub otlp_http_addr: SocketAddr,
    pub max_body_bytes: usize,
    pub otlp_max_message_bytes: usize,
    pub otlp_max_concurrent_exports: usize,
    pub otlp_http_cors_allowed_origins: CorsOrigins,
    pub ingest_timeout: Duration,
    pub value_limits: ValueLimits,
    /// Certificate and key for the three listeners; `None`: plain TCP.
    pub tls: Option<TlsFiles>,
    pub pipeline: PipelineSettings,
    pub cors_allowed_origins: CorsOrigins,
    pub ingest_tokens: Tokens,
    pub query_tokens: Tokens,
    pub correlation_window: Duration,
    pub rules: Rules,
    pub incident_min_severity: IncidentSeverity,
    pub analysis_debounce: Duration,
    pub analysis_lock_ttl: Duration,
    /// `None`: per-trace analyses (`PROBLEM_GROUPING=false`); else the problem window.
    pub problem_window: Option<Duration>,
    pub celery_queue: String,
    pub dispatch_interval: Duration,
    pub dispatch_max_backoff: Duration,
    pub shutdown_timeout: Duration,
    pub trace_query_max_signals: i64,
    /// `TRACE_VIEWER_URL`: links from incidents to their trace.
    pub trace_viewer_url: Option<TraceViewerUrl>,
    /// Every retention (`RETENTION_TRACES`, `_LOGS`, `_METRICS`, `INCIDENT_RETENTION`,
    /// `OUTBOX_RETENTION`) and the partition grid (`PARTITION_INTERVAL`): the one policy.
    pub lifecycle: Lifecycle,
    /// How often the maintenance job runs (`RETENTION_CHECK_SECONDS`).
    pub retention_check: Duration,
    /// How often the database's size is checked against its budget
    /// (`RETENTION_SIZE_CHECK_SECONDS`).
    pub size_check: Duration,
    /// Totals are exact up to this many rows (`QUERY_EXACT_TOTAL_LIMIT`).
    pub query_exact_total_limit: i64,
}

/// What the process was asked to do.
#[derive(Debug)]
pub enum Invocation {
    Serve(Box<Config>),
    Canary(Box<CanarySettings>),
}

impl Invocation {
    /// Reads `.env` (when present in the working directory), the environment and the process
    /// arguments. `--help` and `--version` print and exit here, as clap does.
    pub fn load() -> Result<Invocation, ConfigError> {
        match dotenvy::from_path(".env") {
            Ok(()) => {}
            Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(why) => return Err(ConfigError::new(".env", why.to_string())),
        }
        let mut cli = Cli::parse();
        match cli.command.take() {
            Some(Command::Canary(args)) => Ok(Invocation::Canary(Box::new(CanarySettings::from_args(args)?))),
            None => Ok(Invocation::Serve(Box::new(Config::from_cli(cli)?))),
        }
    }
}

impl Config {
    /// Builds a configuration from explicit arguments (plus the environment), as tests do.
    pub fn from_args<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cli = Cli::try_parse_from(args).map_err(|why| ConfigError::new("arguments", why.to_string()))?;
        Config::from_cli(cli)
    }

    /// Checks every value; the first bad one is reported with its setting's name.
    pub fn from_cli(cli: Cli) -> Result<Config, ConfigError> {
        macro_rules! invalid {
            ($field:ident) => {
                invalid_field!(Cli::command(), cli.$field)
            };
        }
        if cli.command.is_some() {
            return Err(ConfigError::new("arguments", "a subcommand is not the service".into()));
        }
        let ingest_timeout = values::bounded_integer(&cli.ingest_timeout_ms, 10, 600_000)
            .map(Duration::from_millis)
            .map_err(invalid!(ingest_timeout_ms))?;
        let (pg, tls) = database::parse_url(&cli.database_url).map_err(invalid!(database_url))?;
        let database = DatabaseConfig {
            pg,
            tls,
            pool_size: values::bounded_integer(&cli.database_pool_size, 1, 1000)
                .map_err(invalid!(database_pool_size))? as usize,
            pool_idle: values::seconds(&cli.database_pool_idle_seconds, 0, 86_400)
                .map(|idle| Some(idle).filter(|idle| !idle.is_zero()))
                .map_err(invalid!(database_pool_idle_seconds))?,
            wait: values::seconds(&cli.database_wait_seconds, 0, 86_400)
                .map_err(invalid!(database_wait_seconds))?,
            acquire_timeout: values::bounded_integer(&cli.database_acquire_timeout_ms, 1, 600_000)
                .map(Duration::from_millis)
                .map_err(invalid!(database_acquire_timeout_ms))?,
            citus_shard_count: values::bounded_integer(&cli.citus_shard_count, 1, 1024)
                .map_err(invalid!(citus_shard_count))? as u32,
            citus_write_at_workers: values::boolean(&cli.citus_write_at_workers)
                .map_err(invalid!(citus_write_at_workers))?,
            citus_distribute_incidents: values::boolean(&cli.citus_distribute_incidents)
                .map_err(invalid!(citus_distribute_incidents))?,
        };
        let query_database = match cli.query_database_url.trim() {
            "" => None,
            url => {
                let (pg, tls) = database::parse_url(url).map_err(invalid!(query_database_url))?;
                // A replica that is away must not hold a read for long: the primary answers.
                let mut pg = pg;
                if pg.get_connect_timeout().is_none() {
                    pg.connect_timeout(Duration::from_secs(2));
                }
                Some(DatabaseConfig { pg, tls, ..database.clone() })
            }
        };
        Ok(Config {
            database,
            query_database,
            redis_url: parse_redis_url(&cli.redis_url).map_err(invalid!(redis_url))?,
            log_filter: values::log_filter(&cli.log_level).map_err(invalid!(log_level))?,
            log_format: parse_log_format(&cli.log_format).map_err(invalid!(log_format))?,
            api_addr: values::socket_addr(&cli.api_addr).map_err(invalid!(api_addr))?,
            otlp_grpc_addr: values::socket_addr(&cli.otlp_grpc_addr).map_err(invalid!(otlp_grpc_addr))?,
            otlp_http_addr: values::socket_addr(&cli.otlp_http_addr).map_err(invalid!(otlp_http_addr))?,
            max_body_bytes: values::byte_size(&cli.max_body_bytes).map_err(invalid!(max_body_bytes))?,
            otlp_max_message_bytes: values::byte_size(&cli.otlp_max_message_bytes)
                .map_err(invalid!(otlp_max_message_bytes))?,
            otlp_max_concurrent_exports: values::bounded_integer(&cli.otlp_max_concurrent_exports, 1, 10_000)
                .map_err(invalid!(otlp_max_concurrent_exports))?
                as usize,
            otlp_http_cors_allowed_origins: parse_cors(&cli.otlp_http_cors_allowed_origins)
                .map_err(invalid!(otlp_http_cors_allowed_origins))?,
            ingest_timeout,
            value_limits: ValueLimits {
                attribute_count: values::bounded_integer(&cli.attribute_count_limit, 1, 100_000)
                    .map_err(invalid!(attribute_count_limit))? as usize,
                value_length: values::byte_size(&cli.value_length_limit)
                    .and_then(|bytes| match bytes {
                        16.. => Ok(bytes),
                        _ => Err("must be at least 16 bytes".to_owned()),
                    })
                    .map_err(invalid!(value_length_limit))?,
            },
            tls: TlsFiles::from_settings(&cli.tls_cert_file, &cli.tls_key_file)?,
            pipeline: PipelineSettings {
                // A third of the time budget for waiting, a sixth for the request's own batch
                // (see `pipeline::rate`), the rest as margin for a database slowing down.
                max_queue_delay: ingest_timeout / 3,
                writers: values::bounded_integer(&cli.ingest_writers, 1, 64)
                    .map_err(invalid!(ingest_writers))? as usize,
                batch_max_signals: values::bounded_integer(&cli.ingest_batch_max_signals, 1, 100_000)
                    .map_err(invalid!(ingest_batch_max_signals))? as usize,
                linger: values::bounded_integer(&cli.ingest_batch_linger_ms, 0, 10_000)
                    .map(Duration::from_millis)
                    .map_err(invalid!(ingest_batch_linger_ms))?,
                queue_signals: values::bounded_integer(&cli.ingest_queue_signals, 1, 10_000_000)
                    .map_err(invalid!(ingest_queue_signals))? as u32,
                enqueue_wait: values::bounded_integer(&cli.ingest_enqueue_wait_ms, 0, 60_000)
                    .map(Duration::from_millis)
                    .map_err(invalid!(ingest_enqueue_wait_ms))?,
            },
            cors_allowed_origins: parse_cors(&cli.cors_allowed_origins)
                .map_err(invalid!(cors_allowed_origins))?,
            ingest_tokens: Tokens::parse(&cli.ingest_tokens).map_err(invalid!(ingest_tokens))?,
            query_tokens: Tokens::parse(&cli.query_tokens).map_err(invalid!(query_tokens))?,
            correlation_window: values::seconds(&cli.correlation_window_seconds, 1, 86_400)
                .map_err(invalid!(correlation_window_seconds))?,
            rules: match cli.rules_file.trim() {
                "" => Rules::default(),
                path => Rules::load(path).map_err(|why| invalid!(rules_file)(why.to_string()))?,
            },
            incident_min_severity: IncidentSeverity::from_api_value(cli.incident_min_severity.trim())
                .ok_or_else(|| {
                    format!("{:?} is not one of low, medium, high, critical", cli.incident_min_severity)
                })
                .map_err(invalid!(incident_min_severity))?,
            analysis_debounce: values::seconds(&cli.analysis_debounce_seconds, 0, 86_400)
                .map_err(invalid!(analysis_debounce_seconds))?,
            analysis_lock_ttl: values::seconds(&cli.analysis_lock_ttl_seconds, 1, 86_400)
                .map_err(invalid!(analysis_lock_ttl_seconds))?,
            problem_window: {
                let window = values::seconds(&cli.problem_analysis_window_seconds, 0, 7 * 86_400)
                    .map_err(invalid!(problem_analysis_window_seconds))?;
                values::boolean(&cli.problem_grouping).map_err(invalid!(problem_grouping))?.then_some(window)
            },
            celery_queue: match cli.celery_queue.trim() {
                "" => return Err(invalid!(celery_queue)("must not be empty".to_owned())),
                queue => queue.to_owned(),
            },
            dispatch_interval: values::bounded_integer(&cli.dispatch_interval_ms, 10, 60_000)
                .map(Duration::from_millis)
                .map_err(invalid!(dispatch_interval_ms))?,
            dispatch_max_backoff: values::bounded_integer(&cli.dispatch_max_backoff_ms, 100, 3_600_000)
                .map(Duration::from_millis)
                .map_err(invalid!(dispatch_max_backoff_ms))?,
            shutdown_timeout: values::seconds(&cli.shutdown_timeout_seconds, 0, 3_600)
                .map_err(invalid!(shutdown_timeout_seconds))?,
            trace_query_max_signals: values::bounded_integer(&cli.trace_query_max_signals, 1, 1_000_000)
                .map_err(invalid!(trace_query_max_signals))? as i64,
            trace_viewer_url: TraceViewerUrl::parse(&cli.trace_viewer_url)
                .map_err(invalid!(trace_viewer_url))?,
            lifecycle: Lifecycle {
                signals: Retention {
                    traces: values::duration(&cli.retention_traces, true)
                        .map_err(invalid!(retention_traces))?,
                    logs: values::duration(&cli.retention_logs, true).map_err(invalid!(retention_logs))?,
                    metrics: values::duration(&cli.retention_metrics, true)
                        .map_err(invalid!(retention_metrics))?,
                },
                partition_interval: parse_partition_interval(&cli.partition_interval)
                    .map_err(invalid!(partition_interval))?,
                incidents: values::duration(&cli.incident_retention, true)
                    .map_err(invalid!(incident_retention))?,
                outbox: values::duration(&cli.outbox_retention, true).map_err(invalid!(outbox_retention))?,
                max_database_bytes: match cli.retention_max_database_size.trim() {
                    "" | "0" => None,
                    size => Some(values::storage_size(size).map_err(invalid!(retention_max_database_size))?),
                },
                seal_after: values::duration(&cli.seal_after, true).map_err(invalid!(seal_after))?,
            },
            retention_check: values::seconds(&cli.retention_check_seconds, 1, 86_400)
                .map_err(invalid!(retention_check_seconds))?,
            size_check: values::seconds(&cli.retention_size_check_seconds, 1, 3_600)
                .map_err(invalid!(retention_size_check_seconds))?,
            query_exact_total_limit: values::bounded_integer(&cli.query_exact_total_limit, 0, 10_000_000)
                .map_err(invalid!(query_exact_total_limit))? as i64,
        })
    }
}

fn parse_redis_url(text: &str) -> Result<RedisUrl, String> {
    let text = text.trim();
    let known = ["redis://", "rediss://", "redis+unix://", "unix://"];
    if known.iter().any(|scheme| text.starts_with(scheme)) && text.len() > "unix://".len() {
        Ok(RedisUrl(text.to_owned()))
    } else {
        Err("expected a URL such as redis://127.0.0.1:6379/0".to_owned())
    }
}

fn parse_partition_interval(text: &str) -> Result<PartitionInterval, String> {
    let length = values::duration(text, false)?.unwrap_or_default();
    PartitionInterval::new(length).ok_or_else(|| {
        format!("{text:?} is neither whole minutes or hours dividing a day (1h, 6h, 12h; 5m, 15m for short retentions) nor whole days (1d, 7d)")
    })
}

fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("{text:?} is neither text nor json")),
    }
}

fn parse_cors(text: &str) -> Result<CorsOrigins, String> {
    if text.trim() == "*" {
        return Ok(CorsOrigins::Any);
    }
    let mut origins = Vec::new();
    for origin in text.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let rest = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .ok_or_else(|| format!("{origin:?} is not an origin like https://dash.example.com"))?;
        let bad = rest.is_empty() || rest.contains('/') || !origin.chars().all(|c| c.is_ascii_graphic());
        if bad {
            return Err(format!("{origin:?} is not an origin (scheme://host[:port], no path)"));
        }
        origins.push(origin.to_owned());
    }
    Ok(CorsOrigins::List(origins))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(args: &[&str]) -> Result<Config, ConfigError> {
        Config::from_args(std::iter::once("prodsentinel").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let config = with(&[]).unwrap();
        assert_eq!(config.database.pg.get_dbname(), Some("prodsentinel"));
        assert_eq!(config.database.pg.get_user(), Some("postgres"));
        assert_eq!(config.redis_url.as_str(), "redis://127.0.0.1:6379/0");
        assert_eq!(config.log_filter, "info");
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.api_addr.to_string(), "0.0.0.0:8000");
        assert_eq!(config.otlp_grpc_addr.to_string(), "0.0.0.0:4317");
        assert_eq!(config.otlp_http_addr.to_string(), "0.0.0.0:4318");
        assert_eq!(config.max_body_bytes, 4 * 1024 * 1024);
        assert_eq!(config.cors_allowed_origins, CorsOrigins::Any);
        assert_eq!(config.otlp_max_message_bytes, 64 * 1024 * 1024);
        assert_eq!(config.otlp_http_cors_allowed_origins, CorsOrigins::List(vec![]));
        assert_eq!(config.ingest_timeout, Duration::from_secs(3));
        assert_eq!(config.value_limits, ValueLimits { attribute_count: 128, value_length: 65_536 });
        assert!(config.tls.is_none());
        assert_eq!(config.rules, Rules::default());
        assert_eq!(config.incident_min_severity, IncidentSeverity::Low);
        assert_eq!(config.analysis_debounce, Duration::from_secs(60));
        assert_eq!(config.analysis_lock_ttl, Duration::from_secs(300));
        assert_eq!(config.problem_window, Some(Duration::from_secs(600)));
        assert_eq!(with(&["--problem-grouping", "false"]).unwrap().problem_window, None);
        assert_eq!(config.celery_queue, "celery");
        assert_eq!(config.correlation_window, Duration::from_secs(300));
        let days = |n: u64| Some(Duration::from_secs(n * 86_400));
        assert_eq!(
            config.lifecycle,
            Lifecycle {
                signals: Retention { traces: days(7), logs: days(7), metrics: days(30) },
                partition_interval: PartitionInterval::ONE_DAY,
                incidents: days(90),
                outbox: days(7),
                max_database_bytes: None,
                seal_after: Some(Duration::from_secs(3_600)),
            }
        );
        assert_eq!(config.size_check, Duration::from_secs(10));
        let budget = with(&["--retention-max-database-size", "500GB"]).unwrap();
        assert_eq!(budget.lifecycle.max_database_bytes, Some(500 << 30));
        assert_eq!(config.retention_check, Duration::from_secs(300));
        assert_eq!(config.query_exact_total_limit, 10_000);
        let forever = with(&["--retention-logs", "0", "--incident-retention", "0"]).unwrap();
        assert_eq!((forever.lifecycle.signals.logs, forever.lifecycle.incidents), (None, None));
        let hourly = with(&["--partition-interval", "6h"]).unwrap();
        assert_eq!(hourly.lifecycle.partition_interval.length(), Duration::from_secs(6 * 3600));
    }

    #[test]
    fn each_bad_value_names_its_setting() {
        let cases: &[(&[&str], &str)] = &[
            (&["--api-addr", "nowhere"], "API_ADDR"),
            (&["--otlp-grpc-addr", "1.2.3.4"], "OTLP_GRPC_ADDR"),
            (&["--otlp-http-addr", ":x"], "OTLP_HTTP_ADDR"),
            (&["--database-url", "mysql://x"], "DATABASE_URL"),
            (&["--redis-url", "http://x"], "REDIS_URL"),
            (&["--log-level", "loud"], "LOG_LEVEL"),
            (&["--log-format", "xml"], "LOG_FORMAT"),
            (&["--max-body-bytes", "lots"], "MAX_BODY_BYTES"),
            (&["--attribute-count-limit", "0"], "ATTRIBUTE_COUNT_LIMIT"),
            (&["--value-length-limit", "8"], "VALUE_LENGTH_LIMIT"),
            (&["--tls-cert-file", "cert.pem"], "TLS_KEY_FILE"),
            (
                &["--tls-cert-file", "/nonexistent/cert.pem", "--tls-key-file", "/nonexistent/key.pem"],
                "TLS_CERT_FILE",
            ),
            (&["--cors-allowed-origins", "dash.example.com"], "CORS_ALLOWED_ORIGINS"),
            (&["--database-pool-size", "0"], "DATABASE_POOL_SIZE"),
            (&["--otlp-max-message-bytes", "huge"], "OTLP_MAX_MESSAGE_BYTES"),
            (&["--otlp-http-cors-allowed-origins", "x"], "OTLP_HTTP_CORS_ALLOWED_ORIGINS"),
            (&["--ingest-timeout-ms", "0"], "INGEST_TIMEOUT_MS"),
            (&["--rules-file", "/nonexistent/rules.toml"], "RULES_FILE"),
            (&["--incident-min-severity", "severe"], "INCIDENT_MIN_SEVERITY"),
            (&["--analysis-debounce-seconds", "soon"], "ANALYSIS_DEBOUNCE_SECONDS"),
            (&["--analysis-lock-ttl-seconds", "0"], "ANALYSIS_LOCK_TTL_SECONDS"),
            (&["--problem-grouping", "maybe"], "PROBLEM_GROUPING"),
            (&["--problem-analysis-window-seconds", "lots"], "PROBLEM_ANALYSIS_WINDOW_SECONDS"),
            (&["--celery-queue", " "], "CELERY_QUEUE"),
            (&["--dispatch-interval-ms", "1"], "DISPATCH_INTERVAL_MS"),
            (&["--ingest-writers", "0"], "INGEST_WRITERS"),
            (&["--ingest-tokens", "short"], "INGEST_TOKENS"),
            (&["--query-tokens", "short"], "QUERY_TOKENS"),
            (&["--otlp-max-concurrent-exports", "0"], "OTLP_MAX_CONCURRENT_EXPORTS"),
            (&["--ingest-batch-max-signals", "0"], "INGEST_BATCH_MAX_SIGNALS"),
            (&["--ingest-batch-linger-ms", "x"], "INGEST_BATCH_LINGER_MS"),
            (&["--ingest-queue-signals", "0"], "INGEST_QUEUE_SIGNALS"),
            (&["--ingest-enqueue-wait-ms", "y"], "INGEST_ENQUEUE_WAIT_MS"),
            (&["--dispatch-max-backoff-ms", "x"], "DISPATCH_MAX_BACKOFF_MS"),
            (&["--correlation-window-seconds", "0"], "CORRELATION_WINDOW_SECONDS"),
            (&["--partition-interval", "5h"], "PARTITION_INTERVAL"),
            (&["--partition-interval", "0"], "PARTITION_INTERVAL"),
            (&["--retention-traces", "7"], "RETENTION_TRACES"),
            (&["--retention-logs", "a week"], "RETENTION_LOGS"),
            (&["--retention-metrics", "1x"], "RETENTION_METRICS"),
            (&["--retention-check-seconds", "0"], "RETENTION_CHECK_SECONDS"),
            (&["--incident-retention", "90"], "INCIDENT_RETENTION"),
            (&["--outbox-retention", "x"], "OUTBOX_RETENTION"),
            (&["--query-exact-total-limit", "lots"], "QUERY_EXACT_TOTAL_LIMIT"),
            (&["--retention-max-database-size", "huge"], "RETENTION_MAX_DATABASE_SIZE"),
            (&["--retention-max-database-size", "10KB"], "RETENTION_MAX_DATABASE_SIZE"),
            (&["--retention-size-check-seconds", "0"], "RETENTION_SIZE_CHECK_SECONDS"),
        ];
        for (args, setting) in cases {
            let error = with(args).expect_err(setting);
            assert_eq!(error.setting, *setting, "{args:?}");
            assert!(error.to_string().starts_with(&format!("invalid {setting}: ")));
        }
    }

    #[test]
    fn every_setting_has_its_environment_variable() {
        use clap::Args;
        let service = Cli::command();
        let canary = CanaryArgs::augment_args(clap::Command::new("canary"));
        for arg in service.get_arguments().chain(canary.get_arguments()) {
            let id = arg.get_id().as_str();
            if ["help", "version"].contains(&id) {
                continue;
            }
            assert!(arg.get_env().is_some(), "--{id} has no environment variable");
        }
        assert_eq!(env_of(Cli::command(), "retention_traces"), "RETENTION_TRACES");
    }

    #[test]
    fn cors_accepts_any_a_list_or_none() {
        assert_eq!(parse_cors("*"), Ok(CorsOrigins::Any));
        assert_eq!(
            parse_cors("https://a.example.com, http://localhost:3000"),
            Ok(CorsOrigins::List(vec![
                "https://a.example.com".to_owned(),
                "http://localhost:3000".to_owned()
            ]))
        );
        assert_eq!(parse_cors(""), Ok(CorsOrigins::List(vec![])));
        assert!(parse_cors("https://a.example.com/path").is_err());
    }

    #[test]
    fn redis_password_is_not_printed() {
        let url = parse_redis_url("redis://user:hunter2@cache:6379/0").unwrap();
        let shown = format!("{url:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(shown, "redis://user:***@cache:6379/0");
    }
}
