//! `prodsentinel canary`: a client of a running ProdSentinel (or a fleet behind a balancer)
//! that proves, continuously, that what it acknowledges is stored and served intact. Every
//! `--interval` it writes one trace's worth of every signal type over every transport, reads
//! it back through the query API and compares every field with what it wrote; it checks the
//! trace's incident, and spot-checks earlier writes against the retention it is told.
//!
//! What it writes is derived from its id and the write's time ([`plan`]), so it remembers
//! nothing but a capped list of write times ([`spot`]). It imports the model, its settings and
//! the wire types it sends, never the store, the pipeline, the receivers or the API: it must
//! test a service it did not start, and expect what the documented mapping says, not what our
//! code happens to do.

mod checks;
mod client;
mod compare;
mod expected;
mod metrics;
mod otlp_json;
mod plan;
mod report;
mod run;
mod seed;
mod spot;

use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::{CanarySettings, ReportFormat};

/// Runs the canary: forever (until SIGINT/SIGTERM, exit 0), or `--cycles` times, then prints
/// the report and exits 0 only if every write was acknowledged and every check passed (1
/// otherwise; 2 when it cannot start).
pub async fn run(settings: CanarySettings) -> ExitCode {
    let client = match client::Client::new(&settings) {
        Ok(client) => client,
        Err(why) => {
            error!("canary cannot start: {why}");
            return ExitCode::from(2);
        }
    };
    let metrics = metrics::CanaryMetrics::new();
    let stop_serving = CancellationToken::new();
    if let Some(addr) = settings.metrics_addr {
        match metrics::serve(addr, metrics.clone(), stop_serving.clone()).await {
            Ok(bound) => info!(metrics = %format!("http://{bound}/metrics"), "canary metrics served"),
            Err(why) => {
                error!("canary cannot listen on CANARY_METRICS_ADDR {addr}: {why}");
                return ExitCode::from(2);
            }
        }
    }
    info!(
        id = %settings.id, api = settings.api_endpoint.as_str(), otlp_grpc = settings.otlp_grpc_endpoint.as_str(),
        otlp_http = settings.otlp_http_endpoint.as_str(), interval = ?settings.interval, cycles = ?settings.cycles,
        "canary started"
    );
    let (cycles, format, id, api) =
        (settings.cycles, settings.report, settings.id.clone(), settings.api_endpoint.as_str().to_owned());
    let canary = run::Canary::new(settings, client, metrics);
    canary.run(crate::shutdown::signal()).await;
    stop_serving.cancel();
    let tally = match Arc::try_unwrap(canary) {
        Ok(canary) => canary.tally.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner),
        Err(canary) => {
            std::mem::take(&mut *canary.tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
        }
    };
    if cycles.is_none() {
        info!("canary stopped");
        return ExitCode::SUCCESS;
    }
    match format {
        ReportFormat::Text => println!("{}", tally.to_text(&id, &api)),
        ReportFormat::Json => println!("{}", tally.to_json(&id, &api)),
    }
    if tally.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
