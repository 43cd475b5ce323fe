use std::process::ExitCode;

use prodsentinel::config::Invocation;
use prodsentinel::{App, Config};
use tracing::{error, info};

// glibc's allocator spent a third of the receive path's time in malloc/free (perf, see
// BENCHMARKS.md); mimalloc halves the cost per span.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Invocation::load() {
        Ok(Invocation::Serve(config)) => *config,
        Ok(Invocation::Canary(settings)) => {
            prodsentinel::telemetry::init(&settings.log_filter, settings.log_format);
            return prodsentinel::canary::run(*settings).await;
        }
        Err(why) => {
            eprintln!("prodsentinel: {why}");
            return ExitCode::from(2);
        }
    };
    prodsentinel::telemetry::init(&config.log_filter, config.log_format);
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            error!("{why:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let app = App::build(config).await?;
    info!(api = %app.api_addr(), otlp_grpc = %app.grpc_addr(), otlp_http = %app.http_addr(), "ready");
    app.run_until(prodsentinel::shutdown::signal()).await
}
