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

/// Parameters whose value is JSON text: described by the `content` OpenAPI gives for that (a
/// media type and the schema of the decoded value), which utoipa cannot write.
const JSON_PARAMETERS: [&str; 2] = ["tags", "query.attributes"];

/// The served description: utoipa's, with [`JSON_PARAMETERS`] of the Jaeger calls described as
/// JSON objects of scalars and the legacy bodies as the receiver reads them.
pub fn document(spec: &utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut document = serde_json::to_value(spec).unwrap_or_default();
    if let Some(schemas) =
        document.pointer_mut("/components/schemas").and_then(serde_json::Value::as_object_mut)
    {
        for (name, schema) in crate::http::schema::legacy_body_schemas() {
            let one = serde_json::json!({"$ref": format!("#/components/schemas/{name}")});
            let one_or_many = serde_json::json!({
                "description": "One signal, or a JSON array of them (stored all or nothing).",
                "oneOf": [one, {"type": "array", "items": one}],
            });
            schemas.insert(format!("OneOrMany_{name}"), one_or_many);
            schemas.insert(name.to_owned(), schema);
        }
    }
    let Some(paths) = document.get_mut("paths").and_then(serde_json::Value::as_object_mut) else {
        return document;
    };
    for (path, item) in paths.iter_mut() {
        if !path.starts_with("/jaeger/") {
            continue;
        }
        let parameters = item.as_object_mut().into_iter().flat_map(|methods| methods.values_mut());
        for parameter in parameters.filter_map(|op| op.get_mut("parameters")?.as_array_mut()).flatten() {
            let named = parameter.get("name").and_then(serde_json::Value::as_str);
            if named.is_some_and(|name| JSON_PARAMETERS.contains(&name)) {
                if let Some(parameter) = parameter.as_object_mut() {
                    parameter.remove("schema");
                    parameter.insert(
                        "content".into(),
                        serde_json::json!({"application/json": {"schema": {
                            "type": "object",
                            "additionalProperties": {"type": ["string", "number", "boolean"]},
                        }}}),
                    );
                }
            }
        }
    }
    document
}

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
    /// Text without NUL characters (refused: no stored value holds one), as every text here.
    #[param(pattern = r"^[^\u0000]*$")]
    pub trace_id: Option<String>,
    #[param(pattern = r"^[^\u0000]*$")]
    pub service_name: Option<String>,
    pub signal_type: Option<SignalType>,
    #[param(schema_with = crate::http::schema::timestamp_text)]
    pub start_time: Option<DateTime<Utc>>,
    #[param(schema_with = crate::http::schema::timestamp_text)]
    pub end_time: Option<DateTime<Utc>>,
    /// Logs of this level (DEBUG, INFO, WARNING, ERROR, CRITICAL; any case).
    #[param(
        pattern = "^([Dd][Ee][Bb][Uu][Gg]|[Ii][Nn][Ff][Oo]|[Ww][Aa][Rr][Nn][Ii][Nn][Gg]|[Ee][Rr][Rr][Oo][Rr]|[Cc][Rr][Ii][Tt][Ii][Cc][Aa][Ll])$"
    )]
    pub level: Option<String>,
    /// Text contained in log messages, case-insensitive.
    #[param(pattern = r"^[^\u0000]*$")]
    pub q: Option<String>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// Where a page of signals or incidents starts.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageStartQuery {
    /// Rows to skip (default 0).
    #[param(minimum = 0)]
    pub offset: Option<i64>,
    /// The `next_cursor` of the previous page: no gaps or repeats while data arrives, and no
    /// slowdown deep into the list. With `offset`, that many more rows are skipped after it.
    #[param(pattern = "^(-|-?[0-9]{1,16})_[0-9a-f]{32}$")]
    pub cursor: Option<String>,
}

/// `GET /query/incidents`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IncidentQuery {
    pub status: Option<IncidentStatus>,
    pub severity: Option<IncidentSeverity>,
    /// Incidents whose `affected_services` include this service.
    #[param(pattern = r"^[^\u0000]*$")]
    pub service: Option<String>,
    /// The incident of this trace (its `trace_id`, or a correlation key).
    #[param(pattern = r"^[^\u0000]*$")]
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
    #[param(pattern = r"^[^\u0000]*$")]
    pub service: Option<String>,
    pub severity: Option<IncidentSeverity>,
    /// Seen at or after (by `last_seen`).
    #[param(schema_with = crate::http::schema::timestamp_text)]
    pub start_time: Option<DateTime<Utc>>,
    /// First seen at or before.
    #[param(schema_with = crate::http::schema::timestamp_text)]
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
    #[param(schema_with = crate::http::schema::timestamp_text)]
    pub start_time: Option<DateTime<Utc>>,
    /// Default: now. Counted to the end of its minute (for now: everything stored so far). At
    /// or before `start_time`: an empty range, no service.
    #[param(schema_with = crate::http::schema::timestamp_text)]
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

#[cfg(test)]
mod tests {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::IntoParams;

    #[test]
    fn the_cursor_pattern_described_is_the_one_the_cursor_follows() {
        let params = super::PageStartQuery::into_params(|| Some(ParameterIn::Query));
        let cursor = params.iter().find(|p| p.name == "cursor").expect("documented");
        let schema = serde_json::to_value(&cursor.schema).unwrap();
        assert_eq!(schema["pattern"], super::super::cursor::PATTERN);
    }
}
