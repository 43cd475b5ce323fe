//! Every setting as a command-line flag backed by an environment variable. Flags override the
//! environment, which overrides `.env`. Values stay text here; `values.rs` checks them, and a
//! bad value's error names the environment variable declared here (`config::env_of`): each
//! setting's name is written once, in its declaration.

use clap::{Parser, Subcommand};

use super::canary::CanaryArgs;

/// ProdSentinel backend: OTLP and legacy JSON ingestion, incident tracking and the query API.
///
/// Every option can also be set through the environment variable shown, or in a `.env` file in
/// the working directory. Flags win over the environment, the environment over `.env`.
#[derive(Debug, Clone, Parser)]
#[command(name = "prodsentinel", version, about, long_about, args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// PostgreSQL URL (`postgres://`, `postgresql://`, or the original's `postgresql+asyncpg://`).
    /// The database is created when missing.
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/prodsentinel")]
    pub database_url: String,

    /// A streaming replica for the query API's reads (`/query/*`, not PATCH, not ingest); same
    /// forms and TLS settings as DATABASE_URL. Empty: the primary serves them. When the replica
    /// cannot be reached, reads fall back to the primary.
    #[arg(long, env = "QUERY_DATABASE_URL", default_value = "")]
    pub query_database_url: String,

    /// Maximum number of PostgreSQL connections in the pool.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value = "16")]
    pub database_pool_size: String,

    /// On a Citus cluster, the number of shards the signals are distributed over when the
    /// service first lays them out (docs/scaling.md: a few per core of the workers; every
    /// batch writes to up to this many shards). Ignored on a plain PostgreSQL.
    #[arg(long, env = "CITUS_SHARD_COUNT", default_value = "8")]
    pub citus_shard_count: String,

    /// On a Citus cluster, write each batch's signals at the nodes holding their shards, the
    /// service driving the two-phase commit with the coordinator (docs/scaling.md), rather than
    /// through the coordinator. Ignored on a plain PostgreSQL.
    #[arg(long, env = "CITUS_WRITE_AT_WORKERS", default_value = "on")]
    pub citus_write_at_workers: String,

    /// On a Citus cluster, distribute the incidents and their trace claims by `trace_id`,
    /// colocated with the signals, when the service first lays them out (docs/scaling.md, "What
    /// is left" 1; off by default: slower on a small cluster). Ignored on a plain PostgreSQL,
    /// and on a database whose incidents are already laid out.
    #[arg(long, env = "CITUS_DISTRIBUTE_INCIDENTS", default_value = "off")]
    pub citus_distribute_incidents: String,

    /// Seconds a pooled PostgreSQL connection may go unused before it is closed (0: never). A
    /// burst opens connections up to the pool size; each holds a server process and buffers as
    /// large as the largest answer it carried, so the ones the steady load does not reuse go.
    #[arg(long, env = "DATABASE_POOL_IDLE_SECONDS", default_value = "60")]
    pub database_pool_idle_seconds: String,

    /// How long start-up waits for PostgreSQL to accept connections, in seconds.
    #[arg(long, env = "DATABASE_WAIT_SECONDS", default_value = "30")]
    pub database_wait_seconds: String,

    /// How long a request waits for a pooled connection before answering 503, in milliseconds.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT_MS", default_value = "5000")]
    pub database_acquire_timeout_ms: String,

    /// Redis URL of the analysis queue (Celery broker).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379/0")]
    pub redis_url: String,

    /// Log level: DEBUG, INFO, WARNING, ERROR, CRITICAL (or a tracing filter directive).
    #[arg(long, env = "LOG_LEVEL", default_value = "INFO")]
    pub log_level: String,

    /// Log line format: `text` or `json`.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,

    /// Address of the HTTP API (legacy ingest, query, health).
    #[arg(long, env = "API_ADDR", default_value = "0.0.0.0:8000")]
    pub api_addr: String,

    /// Address of the OTLP/gRPC receiver.
    #[arg(long, env = "OTLP_GRPC_ADDR", default_value = "0.0.0.0:4317")]
    pub otlp_grpc_addr: String,

    /// Address of the OTLP/HTTP receiver.
    #[arg(long, env = "OTLP_HTTP_ADDR", default_value = "0.0.0.0:4318")]
    pub otlp_http_addr: String,

    /// Largest OTLP message (gRPC message, or OTLP/HTTP body after decompression), in bytes
    /// (suffixes KiB, MiB, GiB accepted). Larger: 413 / RESOURCE_EXHAUSTED.
    #[arg(long, env = "OTLP_MAX_MESSAGE_BYTES", default_value = "64MiB")]
    pub otlp_max_message_bytes: String,

    /// OTLP exports decoded at once per transport; more wait (undecoded) until one finishes,
    /// which bounds memory when clients send faster than the database absorbs.
    #[arg(long, env = "OTLP_MAX_CONCURRENT_EXPORTS", default_value = "16")]
    pub otlp_max_concurrent_exports: String,

    /// Origins allowed to send OTLP/HTTP from a browser: empty (default) for none, `*` for any,
    /// or a comma-separated list of origins.
    #[arg(long, env = "OTLP_HTTP_CORS_ALLOWED_ORIGINS", default_value = "")]
    pub otlp_http_cors_allowed_origins: String,

    /// Longest time a request waits for its signals to be committed before answering 503 /
    /// UNAVAILABLE (clients time out at 5 to 10 s and would retry anyway), in milliseconds.
    #[arg(long, env = "INGEST_TIMEOUT_MS", default_value = "3000")]
    pub ingest_timeout_ms: String,

    /// Writer tasks, each committing one batch at a time.
    #[arg(long, env = "INGEST_WRITERS", default_value = "8")]
    pub ingest_writers: String,

    /// A batch is written once it holds this many signals…
    #[arg(long, env = "INGEST_BATCH_MAX_SIGNALS", default_value = "2000")]
    pub ingest_batch_max_signals: String,

    /// …or this long (ms) after its first request arrived, whichever comes first.
    #[arg(long, env = "INGEST_BATCH_LINGER_MS", default_value = "0")]
    pub ingest_batch_linger_ms: String,

    /// Signals that may wait for a writer; beyond that, requests are refused (503/UNAVAILABLE).
    #[arg(long, env = "INGEST_QUEUE_SIGNALS", default_value = "20000")]
    pub ingest_queue_signals: String,

    /// How long a request waits for room in a full queue before it is refused, in ms.
    #[arg(long, env = "INGEST_ENQUEUE_WAIT_MS", default_value = "100")]
    pub ingest_enqueue_wait_ms: String,

    /// Attributes kept per attribute map of a signal (OTLP resource, scope, span, event, link, log
    /// record and data point attributes; legacy `attributes`). The rest are dropped and counted
    /// in the payload's `truncated` note.
    #[arg(long, env = "ATTRIBUTE_COUNT_LIMIT", default_value = "128")]
    pub attribute_count_limit: String,

    /// Longest string value kept in a signal's payload (bytes, e.g. `64KiB`): longer strings
    /// (attribute values, log bodies, messages, stack traces) are cut and counted in the
    /// payload's `truncated` note.
    #[arg(long, env = "VALUE_LENGTH_LIMIT", default_value = "64KiB")]
    pub value_length_limit: String,

    /// PEM certificate chain: with TLS_KEY_FILE, all three listeners (API, OTLP/gRPC, OTLP/HTTP)
    /// serve TLS only. Empty: plain TCP.
    #[arg(long, env = "TLS_CERT_FILE", default_value = "")]
    pub tls_cert_file: String,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of TLS_CERT_FILE.
    #[arg(long, env = "TLS_KEY_FILE", default_value = "")]
    pub tls_key_file: String,

    /// Bearer tokens (comma-separated, 16+ characters each) accepted by /ingest/*, OTLP/HTTP and
    /// OTLP/gRPC (`authorization: Bearer <token>`). Empty: no authentication.
    #[arg(long, env = "INGEST_TOKENS", default_value = "", hide_env_values = true)]
    pub ingest_tokens: String,

    /// Bearer tokens accepted by /query/*. Empty: no authentication. Health endpoints stay open.
    #[arg(long, env = "QUERY_TOKENS", default_value = "", hide_env_values = true)]
    pub query_tokens: String,

    /// Largest accepted request body on the API port (suffixes KiB, MiB, GiB accepted). Larger: 413.
    #[arg(long, env = "MAX_BODY_BYTES", default_value = "4MiB")]
    pub max_body_bytes: String,

    /// Origins allowed to call the API from a browser: `*` for any, a comma-separated list of
    /// origins (`https://dash.example.com`), or empty for none.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", default_value = "*")]
    pub cors_allowed_origins: String,

    /// Incident rules file (TOML; see README "Incident rules"). Unset: the built-in rules.
    #[arg(long, env = "RULES_FILE", default_value = "")]
    pub rules_file: String,

    /// Signals assessed below this severity are not tracked in incidents: low, medium, high or
    /// critical (`low` tracks everything, as the original did).
    #[arg(long, env = "INCIDENT_MIN_SEVERITY", default_value = "low")]
    pub incident_min_severity: String,

    /// Delay before the analysis worker runs a queued analysis (the Celery task's `eta`), in
    /// seconds, so that it sees the errors that follow the first one.
    #[arg(long, env = "ANALYSIS_DEBOUNCE_SECONDS", default_value = "60")]
    pub analysis_debounce_seconds: String,

    /// TTL of the Redis lock `analysis:triggered:{trace_id}`, in seconds: at most one analysis per
    /// trace in this window.
    #[arg(long, env = "ANALYSIS_LOCK_TTL_SECONDS", default_value = "300")]
    pub analysis_lock_ttl_seconds: String,

    /// Group error signals into problems by fingerprint and request one analysis per problem
    /// per PROBLEM_ANALYSIS_WINDOW_SECONDS (`true`), or one per trace as before (`false`).
    #[arg(long, env = "PROBLEM_GROUPING", default_value = "true")]
    pub problem_grouping: String,

    /// A problem's analysis is requested at most once per this window, in seconds; the other
    /// incidents of the problem link to its representative trace's analysis.
    #[arg(long, env = "PROBLEM_ANALYSIS_WINDOW_SECONDS", default_value = "600")]
    pub problem_analysis_window_seconds: String,

    /// The Celery queue (Redis list) the analysis worker consumes.
    #[arg(long, env = "CELERY_QUEUE", default_value = "celery")]
    pub celery_queue: String,

    /// How often the dispatcher polls the outbox when idle, in milliseconds (new requests wake
    /// it at once).
    #[arg(long, env = "DISPATCH_INTERVAL_MS", default_value = "1000")]
    pub dispatch_interval_ms: String,

    /// Longest wait before retrying an analysis request while Redis is unreachable, in ms.
    #[arg(long, env = "DISPATCH_MAX_BACKOFF_MS", default_value = "30000")]
    pub dispatch_max_backoff_ms: String,

    /// Width of the window grouping a service's trace-less signals under one key, in seconds.
    #[arg(long, env = "CORRELATION_WINDOW_SECONDS", default_value = "300")]
    pub correlation_window_seconds: String,

    /// Length of one time partition of `raw_signals`: whole hours dividing a day (`1h`, `6h`,
    /// `12h`) or whole days (`1d`, `7d`). Changing it affects partitions created from then on.
    #[arg(long, env = "PARTITION_INTERVAL", default_value = "1d")]
    pub partition_interval: String,

    /// How long trace signals (spans) are kept: a duration (`7d`, `36h`), or `0` to keep them
    /// forever. Expiry drops whole partitions.
    #[arg(long, env = "RETENTION_TRACES", default_value = "7d")]
    pub retention_traces: String,

    /// How long log signals are kept (`0`: forever).
    #[arg(long, env = "RETENTION_LOGS", default_value = "7d")]
    pub retention_logs: String,

    /// How long metric signals (data points) are kept (`0`: forever).
    #[arg(long, env = "RETENTION_METRICS", default_value = "30d")]
    pub retention_metrics: String,

    /// How long after a partition's range ended it is sealed: rewritten into compressed blocks
    /// (a fraction of the disk), read through `raw_signals` as before. A partition that
    /// receives late signals is sealed again once none arrived for as long. `0`: never seal.
    #[arg(long, env = "SEAL_AFTER", default_value = "1h")]
    pub seal_after: String,

    /// How often the maintenance job creates partitions ahead and expires old data, in seconds.
    #[arg(long, env = "RETENTION_CHECK_SECONDS", default_value = "300")]
    pub retention_check_seconds: String,

    /// A size budget for the database (`500GB`, `2TB`; K, M, G, T are powers of 1024): above it,
    /// whole partitions are dropped oldest first (healthy traffic before evidence, never the one
    /// being written) until it is back under. Empty: no budget.
    #[arg(long, env = "RETENTION_MAX_DATABASE_SIZE", default_value = "")]
    pub retention_max_database_size: String,

    /// How often the database's size is checked against RETENTION_MAX_DATABASE_SIZE, in
    /// seconds (and at once when PostgreSQL reports its disk full).
    #[arg(long, env = "RETENTION_SIZE_CHECK_SECONDS", default_value = "10")]
    pub retention_size_check_seconds: String,

    /// How long incidents whose analysis was requested (and their analyses and problems) are
    /// kept after their last signal (`0`: forever). Incidents never analysed go with their
    /// signals.
    #[arg(long, env = "INCIDENT_RETENTION", default_value = "90d")]
    pub incident_retention: String,

    /// How long delivered analysis-outbox rows are kept as an audit trail (`0`: forever).
    #[arg(long, env = "OUTBOX_RETENTION", default_value = "7d")]
    pub outbox_retention: String,

    /// List totals (`total` of /query/signals, /query/incidents, …) are counted exactly up to
    /// this many rows; beyond, `total` is the planner's estimate and `total_exact` is false.
    #[arg(long, env = "QUERY_EXACT_TOTAL_LIMIT", default_value = "10000")]
    pub query_exact_total_limit: String,

    /// How long shutdown waits for in-flight requests after SIGINT/SIGTERM, in seconds.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECONDS", default_value = "30")]
    pub shutdown_timeout_seconds: String,

    /// Most signals `GET /query/traces/{trace_id}` returns (oldest first).
    #[arg(long, env = "TRACE_QUERY_MAX_SIGNALS", default_value = "10000")]
    pub trace_query_max_signals: String,

    /// A link to an incident's trace in a viewer, with `{trace_id}` where the id goes (e.g.
    /// `http://jaeger-ui:16686/trace/{trace_id}`); incident answers then carry `trace_url`.
    /// Empty: no links.
    #[arg(long, env = "TRACE_VIEWER_URL", default_value = "")]
    pub trace_viewer_url: String,
}

/// What the binary does besides serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Prove continuously that what a running ProdSentinel acknowledges is stored and served
    /// intact: writes every signal type over every transport, reads it back, checks every field
    /// (`prodsentinel canary --help`).
    Canary(CanaryArgs),
}
