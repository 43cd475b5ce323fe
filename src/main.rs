use std::process::ExitCode;

use prodsentinel::config::Invocation;
use prodsentinel::{App, Config};
use tracing::{error, info};

// glibc's allocator spent a third of the receive path's time in malloc/free (perf, see
// BENCHMARKS.md); mimalloc halves the cost per span.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    without_transparent_huge_pages();
    serve_or_probe()
}

/// Turns transparent huge pages off for this process, before the runtime's threads start.
/// mimalloc asks the kernel for huge pages on its arenas, and khugepaged then collapses sparsely
/// used 2 MiB ranges into whole huge pages while the process sits idle. Measured on a release
/// build with three bursts of polls (BENCHMARKS.md, "The RSS step"): with huge pages RSS swung
/// 46–83 MB and rose by 14 MB during a quiet minute; without, 24 MB at start, 34–44 MB after
/// each burst, flat while idle. A heap of tens of megabytes gains nothing measurable from them.
/// Also covers hosts whose THP setting is `always`, not only `madvise`.
fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_THP_DISABLE) takes integers only and sets one flag of this process; a
    // kernel that does not know it answers EINVAL and nothing changes.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

#[tokio::main]
async fn serve_or_probe() -> ExitCode {
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
    // Listening before start-up: a signal while the database is awaited or migrated stops the
    // start cleanly, and one that arrives once the app answers is a clean stop.
    let mut shutdown = Box::pin(prodsentinel::shutdown::signal());
    let app = tokio::select! {
        app = App::build(config) => app?,
        () = &mut shutdown => {
            info!("stopped before start-up finished");
            return Ok(());
        }
    };
    info!(api = %app.api_addr(), otlp_grpc = %app.grpc_addr(), otlp_http = %app.http_addr(), "ready");
    app.run_until(shutdown).await
}
