//! ProdSentinel backend: receives telemetry, stores it, tracks incidents and serves queries.
//!
//! Crate map (data flows top to bottom; a module imports only modules below it or beside it,
//! never one that imports it):
//! - [`config`]: typed settings from flags, environment and `.env`, validated at start-up
//!   (the bearer tokens and TLS files among them); it imports nothing of ours but [`model`].
//! - [`app`]: wiring: start-up (database, migrations), listeners, serving until shutdown.
//! - [`receivers`]: transports only: OTLP/gRPC and OTLP/HTTP (one export core), legacy
//!   `POST /ingest/*`.
//! - [`api`]: the query API the dashboard polls (reads, and `PATCH` of an incident's status),
//!   the Jaeger query API viewers read, and the health endpoints.
//! - [`http`]: what `api` and the legacy receiver share: FastAPI-shaped errors, the token
//!   middleware, OpenAPI schemas of shared bodies.
//! - [`mapping`]: wire formats -> [`model::Signal`], pure; payload size limits applied as
//!   payloads are written.
//! - [`ingest`]: the one door receivers call to store signals; which failures are retryable.
//! - [`pipeline`]: group commit: the bounded queue and the writers (one transaction per batch).
//! - [`incidents`]: severity rules, fingerprints and per-batch triage, pure.
//! - [`store`]: all SQL: bootstrap, migrations, partitions, batch writes (signals, incidents,
//!   outbox), queries.
//! - [`queue`]: the outbox dispatcher, the Redis lock and the Celery task message.
//! - [`maintenance`]: partitions created ahead, expiry of partitions and of incidents.
//! - [`model`]: our plain data types and the payload's keys and facts; imports nothing of ours.
//! - [`tls`]: TLS for the three listeners.
//! - [`validation`]: field errors in the FastAPI shape legacy clients parse.
//! - [`error`]: how a class of failure is answered on each transport, and logged.
//! - [`shutdown`], [`telemetry`]: process signals; our own logs and metrics.
//! - [`canary`]: `prodsentinel canary`, a client of a running service that checks it end to
//!   end; of ours it imports [`model`], [`config`], [`shutdown`] and [`error`]'s cause chain,
//!   never the store, the pipeline, the receivers or the API.

#![deny(clippy::unwrap_used)]

pub mod api;
pub mod app;
pub mod canary;
pub mod config;
pub mod error;
pub mod http;
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
