//! Optional TLS for the three listeners (`TLS_CERT_FILE`, `TLS_KEY_FILE`, read and checked by
//! `config`). The HTTP listeners accept through [`TlsListener`], which completes handshakes off
//! the accept loop so a slow or silent client cannot stall the others; OTLP/gRPC uses tonic's
//! own rustls acceptor with the same files.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// A client has this long to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const ACCEPTED_BACKLOG: usize = 128;

/// An HTTP listener serving TLS (HTTP/2 and HTTP/1.1 by ALPN), for `axum::serve`.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, files: &TlsFiles) -> io::Result<TlsListener> {
        let alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let config = files.server_config(alpn).map_err(|(_, why)| io::Error::other(why))?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let local_addr = listener.local_addr()?;
        let (sender, accepted) = mpsc::channel(ACCEPTED_BACKLOG);
        let accept_loop = tokio::spawn(accept_loop(listener, acceptor, sender));
        Ok(TlsListener { accepted, local_addr, accept_loop })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // Closes the port when the server stops accepting (graceful shutdown drops the listener).
        self.accept_loop.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    accepted: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(connection) => connection,
            Err(why) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %why, "TLS listener could not accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, accepted) = (acceptor.clone(), accepted.clone());
        tokio::spawn(async move {
            // A failed handshake (plain HTTP, wrong protocol, timeout) concerns that client only.
            if let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                let _ = accepted.send((tls, peer)).await;
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(connection) => connection,
            // The accept loop never ends on its own while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn setting_at_fault(cert: &str, key: &str) -> &'static str {
        TlsFiles::from_settings(cert, key).expect_err("refused").setting
    }

    #[test]
    fn both_files_or_neither_and_each_is_checked() {
        assert!(TlsFiles::from_settings("", "").unwrap().is_none());
        assert!(TlsFiles::from_settings(&fixture("cert.pem"), &fixture("key.pem")).unwrap().is_some());
        assert_eq!(setting_at_fault(&fixture("cert.pem"), ""), "TLS_KEY_FILE");
        assert_eq!(setting_at_fault("", &fixture("key.pem")), "TLS_CERT_FILE");
        assert_eq!(setting_at_fault("/nonexistent.pem", &fixture("key.pem")), "TLS_CERT_FILE");
        // A key file holding a certificate, a certificate file holding a key.
        assert_eq!(setting_at_fault(&fixture("cert.pem"), &fixture("cert.pem")), "TLS_KEY_FILE");
        assert_eq!(setting_at_fault(&fixture("key.pem"), &fixture("key.pem")), "TLS_CERT_FILE");
        // A valid key that is not the certificate's.
        let error = TlsFiles::from_settings(&fixture("ca.pem"), &fixture("key.pem")).expect_err("mismatch");
        assert_eq!(error.setting, "TLS_KEY_FILE", "{error}");
    }
}
