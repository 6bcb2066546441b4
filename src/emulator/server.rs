//! The accept loop: plain TCP or TLS (a self-signed certificate generated at start-up), one
//! HTTP/1.1 connection task per client, and the ability to drop a connection without an answer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_rustls::rustls;
use tower::ServiceExt;

use super::config::EmulatorError;
use super::routes::Connection;

/// A generated certificate: the acceptor and where its PEM was written.
pub struct TlsSetup {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub pem_path: PathBuf,
}

/// Generates a self-signed certificate for `127.0.0.1`, `localhost` (and `extra_ip`) and writes
/// its PEM to `cert_out` (default: a file in the temp directory named after the port).
pub fn setup_tls(
    cert_out: Option<&Path>,
    port: u16,
    extra_ip: Option<String>,
) -> Result<TlsSetup, EmulatorError> {
    let mut names = vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "::1".to_string(),
    ];
    names.extend(extra_ip);
    let certified =
        rcgen::generate_simple_self_signed(names).map_err(|e| EmulatorError::Tls(e.to_string()))?;
    let pem_path = cert_out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("orderload-emulator-{port}.pem")));
    if let Some(parent) = pem_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| EmulatorError::CertOut {
            path: pem_path.clone(),
            source,
        })?;
    }
    std::fs::write(&pem_path, certified.cert.pem()).map_err(|source| EmulatorError::CertOut {
        path: pem_path.clone(),
        source,
    })?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EmulatorError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .map_err(|e| EmulatorError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsSetup {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        pem_path,
    })
}

/// Serves connections until the task is aborted (which aborts every connection task too).
pub async fn accept_loop(
    listener: TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "emulator: accept failed");
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            match tls {
                None => serve_connection(stream, peer, router).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => serve_connection(stream, peer, router).await,
                    Err(e) => tracing::debug!(error = %e, %peer, "emulator: TLS handshake failed"),
                },
            }
        });
    }
}

async fn serve_connection<S>(stream: S, peer: SocketAddr, router: Router)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let drop_signal = Arc::new(Notify::new());
    let connection = Connection {
        peer,
        drop_signal: drop_signal.clone(),
    };
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(connection.clone());
        router.clone().oneshot(request)
    });
    let serving = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = serving => {
            if let Err(e) = result {
                tracing::debug!(error = %e, %peer, "emulator: connection ended with an error");
            }
        }
        _ = drop_signal.notified() => {
            tracing::debug!(%peer, "emulator: dropping the connection without an answer (injected fault)");
        }
    }
}
