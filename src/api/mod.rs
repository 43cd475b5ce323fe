//! The HTTP API the dashboard polls (docs/contracts.md §3) and the health endpoints. It reads,
//! and writes only an incident's status (`PATCH /query/incidents/{id}`); never telemetry.

mod cursor;
mod health;
mod incidents;
pub mod jaeger;
pub mod observe;
pub mod openapi;
mod params;
mod problems;
mod services;
mod signals;
pub(crate) mod trace_tree;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::store::{Store, Total};

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    /// True once migrations are applied, false again once shutdown starts.
    pub ready: Arc<AtomicBool>,
    /// Cap on the signals `GET /query/traces/{trace_id}` returns.
    pub trace_query_max_signals: i64,
    /// `QUERY_TOKENS`: required on `/query/*` when any is configured.
    pub query_tokens: crate::config::Tokens,
    pub metrics: Arc<crate::telemetry::metrics::Metrics>,
    pub queue_depth: crate::pipeline::QueueDepth,
    /// `TRACE_VIEWER_URL`: incidents link to their trace when set.
    pub trace_viewer: Option<crate::config::TraceViewerUrl>,
}

impl ApiState {
    /// `incident` with its `trace_url`, when links are configured.
    pub fn linked(&self, mut incident: crate::model::Incident) -> crate::model::Incident {
        incident.trace_url = self.trace_viewer.as_ref().map(|url| url.for_trace(&incident.trace_id));
        incident
    }
}

/// `GET /query/*` (behind `QUERY_TOKENS` when set) and the health and metrics endpoints (always open, for probes and scrapers).
pub fn router(state: ApiState) -> OpenApiRouter {
    let auth = axum::middleware::from_fn_with_state(state.query_tokens.clone(), crate::http::require_token);
    let queries = OpenApiRouter::new()
        .routes(routes!(signals::list_signals))
        .routes(routes!(signals::trace_signals))
        .routes(routes!(signals::trace_tree))
        .routes(routes!(services::list_services))
        .routes(routes!(incidents::list_incidents))
        .routes(routes!(incidents::get_incident, incidents::patch_incident))
        .routes(routes!(incidents::incident_signals))
        .routes(routes!(incidents::get_analysis))
        .routes(routes!(problems::list_problems))
        .routes(routes!(problems::get_problem))
        .routes(routes!(jaeger::v1::services))
        .routes(routes!(jaeger::v1::service_operations))
        .routes(routes!(jaeger::v1::operations))
        .routes(routes!(jaeger::v1::trace))
        .routes(routes!(jaeger::v1::search))
        .routes(routes!(jaeger::v1::dependencies))
        .routes(routes!(jaeger::v3::services))
        .routes(routes!(jaeger::v3::operations))
        .routes(routes!(jaeger::v3::trace))
        .routes(routes!(jaeger::v3::search))
        .routes(routes!(jaeger::v3::trace_summaries))
        .route_layer(auth);
    let health = OpenApiRouter::new()
        .routes(routes!(health::ingest_health))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(observe::metrics));
    queries.merge(health).with_state(state)
}

/// A page of a list endpoint: `{"items", "total", "total_exact", "limit", "offset",
/// "next_cursor"}`; `next_cursor` is `null` on the last page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Rows matching the filters: exact up to `QUERY_EXACT_TOTAL_LIMIT` (default 10,000), the
    /// database's estimate beyond it.
    pub total: i64,
    /// `false` when `total` is an estimate.
    pub total_exact: bool,
    pub limit: i64,
    pub offset: i64,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page without a cursor (lists whose order has no keyset).
    pub fn offset_only(items: Vec<T>, total: Total, limit: i64, offset: i64) -> Page<T> {
        Page { items, total: total.count, total_exact: total.exact, limit, offset, next_cursor: None }
    }

    /// A page whose `next_cursor` is made from its last item by `key`, when it is full (a
    /// shorter page is the last one).
    pub fn new(
        items: Vec<T>,
        total: Total,
        limit: i64,
        offset: i64,
        key: impl Fn(&T) -> cursor::Cursor,
    ) -> Page<T> {
        let next_cursor = match items.last() {
            Some(last) if items.len() as i64 == limit => Some(key(last).encode()),
            _ => None,
        };
        Page { items, total: total.count, total_exact: total.exact, limit, offset, next_cursor }
    }
}
