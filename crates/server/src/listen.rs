//! The connection loop: accepts connections and serves each with hyper, with the limits
//! an exposed server needs and `axum::serve` does not set.
//!
//! - A client must send its request headers within `read_header_timeout`
//!   (slow-loris clients are cut off instead of holding a connection forever).
//! - At most `max_connections` connections are served at once (bounded by the process's
//!   file-descriptor limit, which [`raise_fd_limit`] lifts to its hard maximum); past it a
//!   connection gets a `503` and is closed, so the listener never stalls on `EMFILE`
//!   and the probes keep answering.
//! - Accept errors are retried at once or after 10 ms, never after a second's sleep.
//! - With a web configuration ([`WebSecurity`]): TLS (the handshake on the connection's
//!   own task, within `read_header_timeout`, with the certificates in effect when it
//!   connects), basic authentication and response headers ([`crate::auth`]).
//! - On shutdown the listener closes and in-flight requests finish.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use crate::web_config::WebSecurity;

/// How the HTTP server treats connections.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Longest a client may take to send its request headers (default 10 s).
    pub read_header_timeout: Duration,
    /// Most connections served at once (default 10,000).
    pub max_connections: usize,
    /// Largest request body accepted; larger ones get 413 (default 2 MiB).
    pub max_body_bytes: usize,
    /// TLS, basic authentication and headers (the web configuration file).
    pub security: Arc<WebSecurity>,
    /// Serve HTTP/2 only (gRPC listeners; TLS then offers ALPN `h2`), not HTTP/1.1.
    pub http2: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            read_header_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_body_bytes: 2 << 20,
            security: Arc::new(WebSecurity::none()),
            http2: false,
        }
    }
}

/// Raises the soft limit on open files to the hard limit; returns the limit in force.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if let Some(max) = l.maximum
        && l.current.is_some_and(|c| c < max)
    {
        l.current = Some(max);
        let _ = setrlimit(Resource::Nofile, l);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// The listen backlog: connections the kernel queues before they are accepted (the
/// kernel caps it at `net.core.somaxconn`). Tokio's default of 1024 overflows when
/// thousands of clients connect at once, and each dropped SYN costs a client a second.
const BACKLOG: u32 = 8192;

/// Binds `addr` (`host:port`; the first address it resolves to) with a deep backlog.
pub async fn bind(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(BACKLOG)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("{addr} resolves to no address"),
        )
    }))
}

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 41\r\nconnection: close\r\n\r\ntoo many connections; try again shortly\r\n";

/// Serves `router` on `listener` until `shutdown` resolves, then lets in-flight
/// requests finish.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    opts: &ServeOptions,
) -> std::io::Result<()> {
    // Keep some descriptors for the store, the scrapers and the database collectors.
    let fds = raise_fd_limit().saturating_sub(512).max(64);
    let max = opts.max_connections.min(fds as usize).max(1);
    let slots = Arc::new(Semaphore::new(max));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let router = router
        .layer(axum::extract::DefaultBodyLimit::max(opts.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&opts.security),
            crate::auth::layer,
        ));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(opts.read_header_timeout)
        .keep_alive(true);
    let h2 = opts.http2.then(|| {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(60)));
        b
    });
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                ) {
                    tracing::warn!(error = %e, "Accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tokio::spawn(async move {
                let mut s = stream;
                let _ = tokio::time::timeout(Duration::from_secs(1), s.write_all(BUSY)).await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let tls = opts.security.current().tls.clone().map(|cfg| {
            if h2.is_some() {
                // gRPC clients insist on ALPN h2.
                let mut c = (*cfg).clone();
                c.alpn_protocols = vec![b"h2".to_vec()];
                Arc::new(c)
            } else {
                cfg
            }
        });
        let (http, h2, router, watcher) =
            (http.clone(), h2.clone(), router.clone(), graceful.watcher());
        let handshake = opts.read_header_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            // Handlers and the auth layer see the client's address (lock-outs, audit).
            let router = tower::ServiceExt::map_request(
                router,
                move |mut r: hyper::Request<hyper::body::Incoming>| {
                    r.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                    r
                },
            );
            let service = TowerToHyperService::new(router);
            // One connection over `io`, HTTP/1.1 or HTTP/2, ended gracefully at shutdown.
            macro_rules! serve_io {
                ($io:expr) => {
                    match &h2 {
                        Some(h2) => {
                            watcher
                                .watch(h2.serve_connection(TokioIo::new($io), service))
                                .await
                        }
                        None => {
                            watcher
                                .watch(http.serve_connection(TokioIo::new($io), service))
                                .await
                        }
                    }
                };
            }
            let served = match tls {
                None => serve_io!(stream),
                Some(cfg) => {
                    let accept = tokio_rustls::TlsAcceptor::from(cfg).accept(stream);
                    match tokio::time::timeout(handshake, accept).await {
                        Ok(Ok(s)) => serve_io!(s),
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "Connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
