//! The OpenAPI 3.1 description of the API port, generated from the handlers' annotations by
//! utoipa (routes and documentation are registered together, see `app.rs`), served at
//! `/openapi.json`, with Swagger UI at `/docs` and ReDoc at `/redoc`. Both viewers' assets are
//! in the binary (no CDN): the dashboard's developers may be offline or behind a proxy.
//!
//! The types here exist for the documentation only: the query parameters and the API's own
//! bodies. Shapes the legacy ingest endpoints share with it are in `crate::http::schema`.

#![allow(dead_code)] // documentation-only fields are read by the derive macros, not by us

use axum::http::header;
use axum::response::{Html, IntoResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

pub use crate::http::schema::{Accepted, Detail, FieldErrorBody, ValidationErrors};
use crate::model::{IncidentSeverity, IncidentStatus, SignalType};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ProdSentinel API",
        description = "Ingestion (legacy JSON), queries for the dashboard, health, metrics. \
            OTLP is served on its own ports (4317 gRPC, 4318 HTTP) by the OpenTelemetry \
            protocol's own definitions. Errors: 401 (bearer token required), 404/409 \
            `{\"detail\": text}`, 422 FastAPI-style field errors, 503 with Retry-After (retry).",
    ),
    paths(openapi_json),
    tags(
        (name = "ingest", description = "The original's JSON endpoints (INGEST_TOKENS)"),
        (name = "query", description = "What the dashboard polls (QUERY_TOKENS)"),
        (name = "health", description = "Probes and metrics, always open"),
        (name = "jaeger", description = "Jaeger's query API, for Jaeger UI and Grafana's Jaeger data source (QUERY_TOKENS); \
            v1 answers in Jaeger's envelope, v3 in OTLP JSON; errors 400/404 in each one's own shape"),
    ),
    components(schemas(Accepted, Detail, ValidationErrors, FieldErrorBody))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 description of this port", content_type = "application/json")))]
fn openapi_json() {}

/// `PATCH /query/incidents/{id}`.
#[derive(Serialize, ToSchema)]
pub struct StatusUpdate {
    pub status: IncidentStatus,
}

/// `GET /query/signals`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SignalQuery {
    pub trace_id: Option<String>,
    pub service_name: Option<String>,
    pub signal_type: Option<SignalType>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    /// Logs of this level (DEBUG, INFO, WARNING, ERROR, CRITICAL; any case).
    pub level: Option<String>,
    /// Text contained in log messages, case-insensitive.
    pub q: Option<String>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// Where a page of signals or incidents starts.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageStartQuery {
    /// Rows to skip (default 0); not with `cursor`.
    #[param(minimum = 0)]
    pub offset: Option<i64>,
    /// The `next_cursor` of the previous page (instead of `offset`): no gaps or repeats while
    /// data arrives, and no slowdown deep into the list.
    pub cursor: Option<String>,
}

/// `GET /query/incidents`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IncidentQuery {
    pub status: Option<IncidentStatus>,
    pub severity: Option<IncidentSeverity>,
    /// Incidents whose `affected_services` include this service.
    pub service: Option<String>,
    /// The incident of this trace (its `trace_id`, or a correlation key).
    pub trace_id: Option<String>,
    /// Incidents grouped under this problem.
    pub problem: Option<Uuid>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// `GET /query/problems`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProblemQuery {
    /// Problems seen in this service.
    pub service: Option<String>,
    pub severity: Option<IncidentSeverity>,
    /// Seen at or after (by `last_seen`).
    pub start_time: Option<DateTime<Utc>>,
    /// First seen at or before.
    pub end_time: Option<DateTime<Utc>>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// `GET /query/incidents/{id}/signals`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EvidenceQuery {
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// `GET /query/services`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ServicesQuery {
    /// Default: 24 hours before `end_time`. Counted from the start of its minute.
    pub start_time: Option<DateTime<Utc>>,
    /// Default: now. Counted to the end of its minute (for now: everything stored so far).
    pub end_time: Option<DateTime<Utc>>,
}

/// `/health/ready`.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    /// `applied` or `pending`.
    pub migrations: String,
    /// `connected`, `disconnected` or `unknown`.
    pub database: String,
    /// Only with `QUERY_DATABASE_URL`.
    pub query_replica: Option<ReplicaReadiness>,
    /// What keeps failing right now (each logged once per episode): ingest refused because the
    /// database's disk is full, Redis unreachable, … Empty when all is well; these do not make
    /// the service unready (reads, and the other instances' work, go on).
    pub failing: Vec<FailingNow>,
    /// Only with `RETENTION_MAX_DATABASE_SIZE`: the size as last measured, against the budget.
    pub database_size: Option<DatabaseSize>,
}

/// The database's size against its budget, in `/health/ready`.
#[derive(Serialize, ToSchema)]
pub struct DatabaseSize {
    /// `pg_database_size`, as last measured (every `RETENTION_SIZE_CHECK_SECONDS`).
    pub bytes: i64,
    pub budget_bytes: u64,
    /// `bytes / budget_bytes`.
    pub used_of_budget: f64,
}

/// An episode of repeated failures in progress, in `/health/ready`.
#[derive(Serialize, ToSchema)]
pub struct FailingNow {
    /// `ingest`, `queries`, `outbox` or `analysis_queue`.
    pub source: String,
    /// `database_unreachable`, `database_disk_full`, `database_slow`, `ingest_queue_full`,
    /// `shutting_down` or `redis_unreachable`.
    pub cause: String,
    /// The cause in words.
    pub reason: String,
    pub since: DateTime<Utc>,
    /// Failures so far in this episode.
    pub failures: u64,
}

/// The query replica in `/health/ready`.
#[derive(Serialize, ToSchema)]
pub struct ReplicaReadiness {
    /// `connected` or `unavailable`.
    pub status: String,
    /// `replica`, or `primary` while the replica is unavailable.
    pub queries_read_from: String,
    /// Replay behind what the replica received, in seconds; null when it cannot be asked.
    pub replay_lag_seconds: Option<f64>,
}

/// `/ingest/health` (the original's shape).
#[derive(Serialize, ToSchema)]
pub struct IngestHealth {
    /// `healthy` or `unhealthy`.
    pub status: String,
    pub database: String,
    pub service: String,
    pub timestamp: DateTime<Utc>,
}

const REDOC_JS: &[u8] = include_bytes!("assets/redoc.standalone.js");

/// ReDoc's page, reading `/openapi.json` with the bundled script.
pub async fn redoc_page() -> Html<&'static str> {
    Html(
        r#"<!DOCTYPE html>
<html>
  <head>
    <title>ProdSentinel API (ReDoc)</title>
    <meta charset="utf-8"/>
    <meta name="viewport" content="width=device-width, initial-scale=1">
  </head>
  <body>
    <redoc spec-url="/openapi.json"></redoc>
    <script src="/redoc/redoc.standalone.js"></script>
  </body>
</html>"#,
    )
}

/// ReDoc 2.5.4's standalone bundle (MIT, `assets/redoc.LICENSE`), from npm.
pub async fn redoc_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/javascript"), (header::CACHE_CONTROL, "public, max-age=86400")],
        REDOC_JS,
    )
}
