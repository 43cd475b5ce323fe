//! Process signals that ask us to stop.

use std::future::Future;

/// Starts listening for SIGINT (Ctrl-C) and SIGTERM at once, and returns what resolves on the
/// first of them. Listening starts here, not when the future is first polled: until then a
/// signal has its default effect (the process is killed, exit status lost), and the service
/// answers `/health/ready` before its run loop first polls this future, so an orchestrator
/// could stop it in that window. Call it before building the app.
pub fn signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
            Ok(stream) => Some(stream),
            Err(why) => {
                tracing::error!(error = %why, "cannot listen for {name}");
                None
            }
        };
        (listen(SignalKind::interrupt(), "SIGINT"), listen(SignalKind::terminate(), "SIGTERM"))
    };
    async move {
        #[cfg(unix)]
        {
            let received = |stream: Option<tokio::signal::unix::Signal>| async move {
                match stream {
                    Some(mut stream) => {
                        stream.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = received(interrupt) => tracing::info!("SIGINT received, shutting down"),
                () = received(terminate) => tracing::info!("SIGTERM received, shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            if let Err(why) = tokio::signal::ctrl_c().await {
                tracing::error!(error = %why, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
            tracing::info!("Ctrl-C received, shutting down");
        }
    }
}
