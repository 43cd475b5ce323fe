//! Integration tests: one binary, each test with its own PostgreSQL database.

// A test may panic on what it reads (clippy.toml): that is the failure it reports.
#![allow(clippy::disallowed_methods)]

mod api;
mod api_shapes;
mod auth;
mod binary;
mod canary;
mod celery_worker;
mod citus;
mod collector_config;
mod error_signals;
mod fleet;
mod fuzz;
mod health;
mod helpers;
mod jaeger;
mod legacy;
mod metrics;
mod openapi;
mod otlp_grpc;
mod otlp_http;
mod own_postgres;
mod pipeline;
mod postgres_tls;
mod postgres_tls_libpq;
mod problems;
mod process;
mod queries;
mod real_clients;
mod redis_auth;
mod reliability;
mod replica;
mod store;
mod tls;
mod triage;
mod volume;
