//! Health endpoints: the original's `/ingest/health`, and liveness/readiness probes.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};

use super::openapi::{IngestHealth, Readiness};
use super::ApiState;
use crate::model::time::format_timestamp;

/// How long a health probe waits for the database before calling it unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// 200 when the database answers, 503 otherwise (the original's shape).
#[utoipa::path(get, path = "/ingest/health", tag = "health",
    responses((status = 200, body = IngestHealth), (status = 503, description = "Database unreachable", body = IngestHealth)))]
pub async fn ingest_health(State(state): State<ApiState>) -> (StatusCode, Json<Value>) {
    let connected = state.store.ping(PROBE_TIMEOUT).await.is_ok();
    let (status, word, database) = if connected {
        (StatusCode::OK, "healthy", "connected")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy", "disconnected")
    };
    let body = json!({
        "status": word,
        "database": database,
        "service": "prodsentinel-backend",
        "timestamp": format_timestamp(&Utc::now()),
    });
    (status, Json(body))
}

/// 200 while the process serves requests at all.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "`{\"status\": \"alive\"}` while the process serves requests")))]
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

/// 200 once migrations are applied and the pool reaches the database; 503 before, during a
/// database outage, and once shutdown has begun. `failing` lists the episodes of repeated
/// failures in progress (ingest refused because the database's disk is full, Redis away, …). With `QUERY_DATABASE_URL`, `query_replica`
/// reports the replica and its replay lag; a replica away does not make the service unready
/// (queries read from the primary meanwhile).
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, body = Readiness), (status = 503, description = "Not ready: migrations pending, database unreachable, or shutting down", body = Readiness)))]
pub async fn ready(State(state): State<ApiState>) -> (StatusCode, Json<Value>) {
    let migrated = state.ready.load(Ordering::Acquire);
    let connected = migrated && state.store.ping(PROBE_TIMEOUT).await.is_ok();
    let status = if connected { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut body = json!({
        "status": if connected { "ready" } else { "not_ready" },
        "migrations": if migrated { "applied" } else { "pending" },
        "database": if connected { "connected" } else if migrated { "disconnected" } else { "unknown" },
    });
    let failing: Vec<Value> = state
        .metrics
        .episodes
        .in_progress()
        .into_iter()
        .map(|e| {
            json!({
                "source": e.source.label(), "cause": e.cause.label(), "reason": e.cause.explain(),
                "since": format_timestamp(&e.since), "failures": e.failures,
            })
        })
        .collect();
    body["failing"] = Value::Array(failing);
    if let Some(budget) = state.store.settings().lifecycle.max_database_bytes {
        let size = state.metrics.database_size.get();
        body["database_size"] = json!({
            "bytes": size, "budget_bytes": budget,
            "used_of_budget": (size as f64 / budget as f64 * 1000.0).round() / 1000.0,
        });
    }
    if let Some(replica) = state.store.replica_status(PROBE_TIMEOUT).await {
        body["query_replica"] = json!({
            "status": if replica.reachable { "connected" } else { "unavailable" },
            "queries_read_from": if replica.serving { "replica" } else { "primary" },
            "replay_lag_seconds": replica.replay_lag_seconds,
        });
    }
    (status, Json(body))
}
