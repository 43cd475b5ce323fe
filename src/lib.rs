//! ProdSentinel backend: receives telemetry, stores it, tracks incidents and serves queries.
//!
//! Crate map (data flows top to bottom; `api` only reads):
//! - [`config`]: typed settings from flags, environment and `.env`, validated at start-up.
//! - [`auth`]: optional bearer tokens for ingestion and queries.
//! - [`app`]: wiring: start-up (database, migrations), listeners, serving until shutdown.
//! - [`tls`]: optional TLS for the three listeners.
//! - [`receivers`]: transports only: OTLP/gRPC, OTLP/HTTP and the legacy `POST /ingest/*`.
//! - [`mapping`]: wire formats -> [`model::Signal`], pure; payload size limits.
//! - [`ingest`]: the one door receivers call to store signals (limits applied there).
//! - [`pipeline`]: group commit: the bounded queue and the writers (one transaction per batch).
//! - [`incidents`]: severity rules and per-batch triage, pure.
//! - [`store`]: all SQL: bootstrap, migrations, batch writes (signals, incidents, outbox), queries.
//! - [`queue`]: the outbox dispatcher, the Redis lock and the Celery task message.
//! - [`maintenance`]: partitions created ahead, expiry of partitions and of incidents.
//! - [`api`]: the read-only query API and health endpoints.
//! - [`model`]: our plain data types; imports nothing of ours.
//! - [`validation`]: field errors in the FastAPI shape legacy clients parse.
//! - [`error`]: how a failure is classified for the client.
//! - [`shutdown`], [`telemetry`]: process signals, our own logs.

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod incidents;
pub mod ingest;
pub mod maintenance;
pub mod mapping;
pub mod model;
pub mod pipeline;
pub mod queue;
pub mod receivers;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod validation;

pub use app::App;
pub use config::Config;
