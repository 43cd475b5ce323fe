//! `GET /metrics` and the per-endpoint request latency middleware.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use crate::http::StoreFailure;
use crate::telemetry::episodes::Source;
use crate::telemetry::metrics::{Metrics, PoolLabels};

/// The OpenMetrics text exposition; gauges are read at scrape time. A database that cannot be
/// reached leaves the outbox gauges at their last values rather than failing the scrape.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus metrics (OpenMetrics text)", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<ApiState>) -> Response {
    let metrics = &state.metrics;
    metrics.queue_signals.set(state.queue_depth.signals() as i64);
    let (in_use, idle, max) = state.store.pool_status();
    metrics.pool_connections.get_or_create(&PoolLabels { state: "in_use" }).set(in_use as i64);
    metrics.pool_connections.get_or_create(&PoolLabels { state: "idle" }).set(idle as i64);
    metrics.pool_max.set(max as i64);
    if let Some(replica) = state.store.replica_status(Duration::from_secs(2)).await {
        metrics.replica_up.set(i64::from(replica.serving));
        if let Some(lag) = replica.replay_lag_seconds {
            metrics.replica_lag.set(lag);
        }
    }
    if let Ok((backlog, oldest)) = state.store.outbox_backlog().await {
        metrics.outbox_backlog.set(backlog);
        metrics.outbox_oldest_age.set(oldest);
    }
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], metrics.encode()).into_response()
}

/// Records each request's latency under its route template (`route_layer`, so only matched
/// routes: an unknown path does not create a label of its own).
pub async fn track_latency(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let endpoint =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    metrics.observe_request(&endpoint, &method, status.as_str(), started.elapsed().as_secs_f64());
    // The query API's database failures, logged once per episode.
    if let Some(failure) = response.extensions().get::<StoreFailure>() {
        metrics.episodes.failed(Source::queries, failure.cause, &failure.detail);
    } else if status.is_success() && endpoint.starts_with("/query") {
        metrics.episodes.recovered(Source::queries);
    }
    response
}
