//! Wiring: everything `main` starts, built the same way by the integration tests.
//!
//! Start-up order: wait for PostgreSQL, create the database if missing, apply migrations, open
//! the pool, bind the listener. Shutdown order: readiness goes false, the listener stops
//! accepting, in-flight requests finish (up to `SHUTDOWN_TIMEOUT_SECONDS`), the pool closes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::IntoResponse;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tracing::{info, warn};

use crate::api::{self, ApiState};
use crate::config::{Config, CorsOrigins};
use crate::ingest::Ingest;
use crate::mapping::legacy::LegacyOptions;
use crate::receivers::legacy::{self, LegacyState};
use crate::store::{self, migrate, Store};

/// A started service: database ready, listener bound, not yet serving.
pub struct App {
    config: Config,
    store: Store,
    api_listener: TcpListener,
    api_addr: SocketAddr,
    ready: Arc<AtomicBool>,
}

impl App {
    /// Prepares the database and binds the listener. Fails (with the reason) when the database
    /// stays unreachable for `DATABASE_WAIT_SECONDS`, a migration fails or was edited, or the
    /// address cannot be bound.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let server = store::wait_for_server(&config.database).await?;
        store::ensure_database(&server, &config.database).await?;
        drop(server);
        let report = store::migrate_database(&config.database, migrate::MIGRATIONS).await?;
        if !report.applied.is_empty() {
            info!(applied = ?report.applied, "database schema updated");
        }
        let store = Store::new(&config.database)?;
        let api_listener = TcpListener::bind(config.api_addr)
            .await
            .with_context(|| format!("cannot listen on API_ADDR {}", config.api_addr))?;
        let api_addr = api_listener.local_addr()?;
        let ready = Arc::new(AtomicBool::new(true));
        Ok(App {
            config,
            store,
            api_listener,
            api_addr,
            ready,
        })
    }

    /// The address the API actually listens on (useful with port 0).
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The store, for tests that inspect what was written.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The whole HTTP surface of the API port.
    fn router(&self) -> Router {
        let legacy_state = LegacyState {
            ingest: Ingest::new(self.store.clone()),
            options: LegacyOptions {
                correlation_window: self.config.correlation_window,
            },
            max_body_bytes: self.config.max_body_bytes,
        };
        let api_state = ApiState {
            store: self.store.clone(),
            ready: self.ready.clone(),
            trace_query_max_signals: self.config.trace_query_max_signals,
        };
        let router = legacy::router(legacy_state)
            .merge(api::router(api_state))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(self.config.max_body_bytes));
        match cors_layer(&self.config.cors_allowed_origins) {
            Some(cors) => router.layer(cors),
            None => router,
        }
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests (up to
    /// `SHUTDOWN_TIMEOUT_SECONDS`) and closes the pool.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let router = self.router();
        let stop = CancellationToken::new();
        let server =
            axum::serve(self.api_listener, router).with_graceful_shutdown(stop.clone().cancelled_owned());
        let mut server = tokio::spawn(async move { server.await });
        tokio::select! {
            () = shutdown => {}
            result = &mut server => {
                self.store.close();
                return Err(anyhow::anyhow!("API server stopped unexpectedly: {:?}", result));
            }
        }
        self.ready.store(false, Ordering::Release);
        stop.cancel();
        match tokio::time::timeout(self.config.shutdown_timeout, &mut server).await {
            Ok(Ok(Ok(()))) => info!("all in-flight requests finished"),
            Ok(Ok(Err(why))) => warn!(error = %why, "API server ended with an error"),
            Ok(Err(why)) => warn!(error = %why, "API server task failed"),
            Err(_) => {
                server.abort();
                warn!(timeout = ?self.config.shutdown_timeout, "shutdown deadline reached, in-flight requests dropped");
            }
        }
        self.store.close();
        info!("stopped");
        Ok(())
    }
}

fn cors_layer(origins: &CorsOrigins) -> Option<CorsLayer> {
    let methods = [Method::GET, Method::POST, Method::PATCH, Method::OPTIONS];
    match origins {
        CorsOrigins::Any => Some(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods(methods)
                .allow_headers(Any),
        ),
        CorsOrigins::List(list) if list.is_empty() => None,
        CorsOrigins::List(list) => {
            // Validated as plain ASCII origins in `config`, so every one converts.
            let values: Vec<HeaderValue> = list
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect();
            Some(
                CorsLayer::new()
                    .allow_origin(AllowOrigin::list(values))
                    .allow_methods(methods)
                    .allow_headers(Any),
            )
        }
    }
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, Json(json!({ "detail": "Not Found" })))
}

async fn method_not_allowed() -> impl IntoResponse {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({ "detail": "Method Not Allowed" })),
    )
}
