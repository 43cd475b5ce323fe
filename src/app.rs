//! Wiring: everything `main` starts, built the same way by the integration tests.
//!
//! Start-up order: wait for PostgreSQL, create the database if missing, apply migrations, open
//! the pool, bind the three listeners (API, OTLP/gRPC, OTLP/HTTP); Redis is not needed to start.
//! Before serving: partitions for the current interval and the next ones. Running: the three
//! servers, the outbox dispatcher (unless [`App::dispatch_by_hand`]) and the maintenance job.
//! Shutdown order: readiness goes false, every listener stops accepting, in-flight requests
//! finish, the pipeline commits what it acknowledged, the dispatcher and the maintenance job
//! finish their current step (all within `SHUTDOWN_TIMEOUT_SECONDS`), the pool closes.

use std::future::{Future, IntoFuture};
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
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tracing::{info, warn};

use crate::api::openapi::{self, ApiDoc};
use crate::api::{self, ApiState};
use crate::config::TlsFiles;
use crate::config::{Config, CorsOrigins};
use crate::incidents::Triage;
use crate::ingest::Ingest;
use crate::maintenance::{Maintenance, MaintenanceSettings};
use crate::mapping::MappingOptions;
use crate::pipeline::Pipeline;
use crate::queue::{AnalysisQueue, DispatchSettings, Dispatcher};
use crate::receivers::legacy::{self, LegacyState};
use crate::receivers::otlp_export::ExportCore;
use crate::receivers::otlp_grpc::OtlpGrpc;
use crate::receivers::otlp_http::{self, OtlpHttpState};
use crate::store::{self, migrate, StorageSettings, Store};
use crate::telemetry::metrics::Metrics;
use crate::tls::TlsListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

/// A started service: database ready, listeners bound, not yet serving.
pub struct App {
    config: Config,
    store: Store,
    listeners: Listeners,
    ready: Arc<AtomicBool>,
    queue: AnalysisQueue,
    pipeline: Pipeline,
    /// The pipeline's writer tasks; they end once every `Pipeline` handle is dropped.
    writers: JoinSet<()>,
    /// Wakes the dispatcher when ingestion wrote analysis requests.
    dispatch_wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    /// Whether `run_until` runs the outbox dispatcher (see [`App::dispatch_by_hand`]).
    background_dispatch: bool,
}

struct Listeners {
    api: TcpListener,
    otlp_grpc: TcpListener,
    otlp_http: TcpListener,
}

async fn bind(setting: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {setting} {addr}"))
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
        let layout = store::prepare_layout(&config.database).await?;
        let store = Store::new(
            &config.database,
            config.query_database.as_ref(),
            StorageSettings {
                lifecycle: config.lifecycle,
                exact_total_limit: config.query_exact_total_limit,
                layout,
            },
        )?;
        let listeners = Listeners {
            api: bind("API_ADDR", config.api_addr).await?,
            otlp_grpc: bind("OTLP_GRPC_ADDR", config.otlp_grpc_addr).await?,
            otlp_http: bind("OTLP_HTTP_ADDR", config.otlp_http_addr).await?,
        };
        let ready = Arc::new(AtomicBool::new(true));
        let triage = Arc::new(Triage {
            rules: config.rules.clone(),
            min_severity: config.incident_min_severity,
            analysis_window: config.analysis_lock_ttl,
            problem_window: config.problem_window,
        });
        // Lazy: Redis being down must not stop start-up or ingestion; the outbox waits for it.
        let queue =
            AnalysisQueue::new(config.redis_url.as_str(), &config.celery_queue, config.analysis_lock_ttl)
                .context("invalid REDIS_URL")?;
        let dispatch_wake = Arc::new(Notify::new());
        let metrics = Arc::new(Metrics::new());
        let mut writers = JoinSet::new();
        let pipeline = Pipeline::start(
            store.clone(),
            triage,
            config.pipeline.clone(),
            dispatch_wake.clone(),
            metrics.clone(),
            &mut writers,
        );
        let app = App {
            config,
            store,
            listeners,
            queue,
            pipeline,
            writers,
            dispatch_wake,
            ready,
            metrics,
            background_dispatch: true,
        };
        // Before serving: the first signals should find partitions of their own.
        app.maintenance().prepare().await;
        // On Citus, batches go through the coordinator until the map is read (every pass).
        if let Err(why) = app.store.refresh_shard_map().await {
            warn!(error = %crate::error::error_chain(&why), "could not read the Citus shard map; batches go through the coordinator until a maintenance pass reads it");
        }
        Ok(app)
    }

    /// The address the API actually listens on (useful with port 0).
    pub fn api_addr(&self) -> SocketAddr {
        local_addr(&self.listeners.api)
    }

    /// The address the OTLP/gRPC receiver actually listens on.
    pub fn grpc_addr(&self) -> SocketAddr {
        local_addr(&self.listeners.otlp_grpc)
    }

    /// The address the OTLP/HTTP receiver actually listens on.
    pub fn http_addr(&self) -> SocketAddr {
        local_addr(&self.listeners.otlp_http)
    }

    /// The outbox dispatcher this app runs (tests build extra ones to step by hand).
    pub fn dispatcher(&self) -> Dispatcher {
        let settings = DispatchSettings {
            debounce: self.config.analysis_debounce,
            interval: self.config.dispatch_interval,
            max_backoff: self.config.dispatch_max_backoff,
            batch: 100,
            origin: format!("prodsentinel-{}@{}", std::process::id(), hostname()),
        };
        Dispatcher::new(
            self.store.clone(),
            self.queue.clone(),
            settings,
            self.dispatch_wake.clone(),
            self.metrics.clone(),
        )
    }

    /// Serves without the background outbox dispatcher: whoever embeds the app steps
    /// [`App::dispatcher`] when it chooses (tests do, to assert each step's outcome instead of
    /// waiting for a poll). Analysis requests stay in the outbox until then.
    pub fn dispatch_by_hand(mut self) -> App {
        self.background_dispatch = false;
        self
    }

    /// The store, for tests that inspect what was written.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn ingest(&self) -> Ingest {
        Ingest::new(
            self.pipeline.clone(),
            self.config.ingest_timeout,
            self.config.lifecycle,
            self.metrics.clone(),
        )
    }

    /// The maintenance job this app runs (tests run passes by hand, at any time).
    pub fn maintenance(&self) -> Maintenance {
        let settings =
            MaintenanceSettings { every: self.config.retention_check, size_every: self.config.size_check };
        Maintenance::new(self.store.clone(), settings, self.metrics.clone())
    }

    fn mapping_options(&self) -> MappingOptions {
        MappingOptions {
            correlation_window: self.config.correlation_window,
            limits: self.config.value_limits,
        }
    }

    /// The OTLP/HTTP receiver, with CORS when `OTLP_HTTP_CORS_ALLOWED_ORIGINS` allows any.
    fn otlp_http_router(&self) -> Router {
        let router = otlp_http::router(OtlpHttpState {
            core: ExportCore { ingest: self.ingest(), options: self.mapping_options() },
            max_message_bytes: self.config.otlp_max_message_bytes,
            tokens: self.config.ingest_tokens.clone(),
        })
        // Requests beyond the limit wait with their bodies unread: memory stays bounded.
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(self.config.otlp_max_concurrent_exports))
        .route_layer(axum::middleware::from_fn_with_state(self.metrics.clone(), api::observe::track_latency));
        match cors_layer(&self.config.otlp_http_cors_allowed_origins) {
            Some(cors) => router.layer(cors),
            None => router,
        }
    }

    /// The whole HTTP surface of the API port.
    fn router(&self) -> Router {
        let legacy_state = LegacyState {
            ingest: self.ingest(),
            options: self.mapping_options(),
            max_body_bytes: self.config.max_body_bytes,
            tokens: self.config.ingest_tokens.clone(),
        };
        let api_state = ApiState {
            store: self.store.clone(),
            ready: self.ready.clone(),
            trace_query_max_signals: self.config.trace_query_max_signals,
            query_tokens: self.config.query_tokens.clone(),
            metrics: self.metrics.clone(),
            queue_depth: self.pipeline.depth(),
            trace_viewer: self.config.trace_viewer_url.clone(),
        };
        let (router, spec) = OpenApiRouter::with_openapi(ApiDoc::openapi())
            .merge(legacy::router(legacy_state))
            .merge(api::router(api_state))
            .split_for_parts();
        let router = router
            .merge(SwaggerUi::new("/docs").external_url_unchecked("/openapi.json", openapi::document(&spec)))
            .route("/redoc", axum::routing::get(openapi::redoc_page))
            .route("/redoc/redoc.standalone.js", axum::routing::get(openapi::redoc_script))
            .route_layer(axum::middleware::from_fn_with_state(
                self.metrics.clone(),
                api::observe::track_latency,
            ))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(self.config.max_body_bytes));
        match cors_layer(&self.config.cors_allowed_origins) {
            Some(cors) => router.layer(cors),
            None => router,
        }
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests (up to
    /// `SHUTDOWN_TIMEOUT_SECONDS`) and closes the pool. Fails if a server stops on its own.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let (api_router, otlp_http_router) = (self.router(), self.otlp_http_router());
        let dispatcher = self.dispatcher();
        let maintenance = self.maintenance();
        let grpc = OtlpGrpc {
            core: ExportCore { ingest: self.ingest(), options: self.mapping_options() },
            max_message_bytes: self.config.otlp_max_message_bytes,
            max_concurrent_exports: self.config.otlp_max_concurrent_exports,
            tokens: self.config.ingest_tokens.clone(),
            metrics: self.metrics.clone(),
        };
        let Listeners { api, otlp_grpc, otlp_http } = self.listeners;
        drop(self.pipeline);
        let tls = self.config.tls.as_ref();
        let api = serve_http(api, api_router, tls, &stop).context("API server")?;
        let otlp_http = serve_http(otlp_http, otlp_http_router, tls, &stop).context("OTLP/HTTP server")?;
        let otlp_grpc = grpc.serve(otlp_grpc, stop.clone().cancelled_owned(), tls.map(TlsFiles::grpc_config));
        let mut servers = JoinSet::new();
        servers.spawn(async move { api.await.context("API server") });
        servers.spawn(async move { otlp_http.await.context("OTLP/HTTP server") });
        servers.spawn(async move { otlp_grpc.await.context("OTLP/gRPC server") });
        if self.background_dispatch {
            let dispatcher_stop = stop.clone();
            servers.spawn(async move {
                dispatcher.run(dispatcher_stop).await;
                Ok(())
            });
        }
        let (idle_store, idle_stop) = (self.store.clone(), stop.clone());
        servers.spawn(async move {
            idle_store.close_idle_connections(idle_stop).await;
            Ok(())
        });
        let maintenance_stop = stop.clone();
        servers.spawn(async move {
            maintenance.run(maintenance_stop).await;
            Ok(())
        });

        tokio::select! {
            () = shutdown => {}
            ended = servers.join_next() => {
                stop.cancel();
                self.store.close();
                return Err(anyhow::anyhow!("a server stopped unexpectedly: {ended:?}"));
            }
        }
        self.ready.store(false, Ordering::Release);
        stop.cancel();
        let deadline = tokio::time::Instant::now() + self.config.shutdown_timeout;
        let drained = tokio::time::timeout_at(deadline, async {
            while let Some(ended) = servers.join_next().await {
                match ended {
                    Ok(Ok(())) => {}
                    Ok(Err(why)) => warn!(error = format!("{why:#}"), "server ended with an error"),
                    Err(why) => warn!(error = %why, "server task failed"),
                }
            }
        })
        .await;
        match drained {
            Ok(()) => info!("all in-flight requests finished"),
            Err(_) => {
                servers.abort_all();
                warn!(timeout = ?self.config.shutdown_timeout, "shutdown deadline reached, in-flight requests dropped");
            }
        }
        // The servers held the last pipeline handles: the writers now flush what is queued.
        drop(servers);
        let mut writers = self.writers;
        let flushed =
            tokio::time::timeout_at(deadline, async { while writers.join_next().await.is_some() {} }).await;
        if flushed.is_err() {
            writers.abort_all();
            warn!("shutdown deadline reached before the last batch was written");
        }
        self.store.close();
        info!("stopped");
        Ok(())
    }
}

type Serving = std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

/// Serves `router` on `listener` (over TLS when configured) until `stop` is cancelled.
fn serve_http(
    listener: TcpListener,
    router: Router,
    tls: Option<&TlsFiles>,
    stop: &CancellationToken,
) -> anyhow::Result<Serving> {
    let stopped = stop.clone().cancelled_owned();
    Ok(match tls {
        None => Box::pin(axum::serve(listener, router).with_graceful_shutdown(stopped).into_future()),
        Some(files) => {
            let listener = TlsListener::new(listener, files)?;
            Box::pin(axum::serve(listener, router).with_graceful_shutdown(stopped).into_future())
        }
    })
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    // A bound TCP listener always has a local address.
    listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// This machine's name, for the Celery `origin` header (informational only).
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn cors_layer(origins: &CorsOrigins) -> Option<CorsLayer> {
    let methods = [Method::GET, Method::POST, Method::PATCH, Method::OPTIONS];
    match origins {
        CorsOrigins::Any => {
            Some(CorsLayer::new().allow_origin(Any).allow_methods(methods).allow_headers(Any))
        }
        CorsOrigins::List(list) if list.is_empty() => None,
        CorsOrigins::List(list) => {
            // Validated as plain ASCII origins in `config`, so every one converts.
            let values: Vec<HeaderValue> =
                list.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
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
    (StatusCode::METHOD_NOT_ALLOWED, Json(json!({ "detail": "Method Not Allowed" })))
}
