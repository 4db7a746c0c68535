//! One connection's life, from accept to close, in one task: TLS if configured, the deadline for
//! the first request, HTTP/1.1 or HTTP/2, and, when an HTTP/1.1 request upgrades to WebSocket,
//! the WebSocket session itself. The task holds the connection's per-address [`Slot`] until it
//! ends however it ends, so the open-connection gauges and limits count every protocol alike,
//! and shutdown waits for every connection (the accept loop's set owns the task).

use super::limits::Slot;
use super::stats::EdgeStats;
use super::websocket::Handover;
use crate::hub::Hub;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Facts about a connection, attached to each of its requests.
#[derive(Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// Where a WebSocket upgrade leaves the session for this connection's task to run.
    pub(crate) handover: Handover,
}

/// What every connection's task shares: how to speak HTTP, TLS and the routes.
pub(super) struct Edge {
    router: axum::Router,
    http: auto::Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    stats: Arc<EdgeStats>,
    hub: Arc<Hub>,
    max_frame: usize,
}

impl Edge {
    /// How every connection speaks: HTTP/1.1 (WebSocket) and HTTP/2 (gRPC) on one port, TLS if
    /// configured, and the deadlines.
    pub(super) fn new(
        router: axum::Router,
        config: &super::ServerConfig,
        tls: Option<TlsAcceptor>,
        stats: Arc<EdgeStats>,
        hub: Arc<Hub>,
    ) -> Arc<Edge> {
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.handshake_timeout);
        http.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(16)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        Arc::new(Edge {
            router,
            http,
            tls,
            handshake_timeout: config.handshake_timeout,
            stats,
            hub,
            max_frame: config.max_frame,
        })
    }

    /// Whether connections speak TLS.
    pub(super) fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The edge's counters.
    pub(super) fn stats(&self) -> &EdgeStats {
        &self.stats
    }

    /// Serves one accepted connection to its end. `slot` keeps it counted against its address
    /// until then; `stop` asks it to finish gracefully (HTTP/2 GOAWAY, HTTP/1 close after the
    /// current request; a WebSocket session ends through the hub's shutdown).
    pub(super) async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        stop: CancellationToken,
        slot: Slot,
    ) {
        let _slot = slot;
        let deadline = Instant::now() + self.handshake_timeout;
        let Some(acceptor) = &self.tls else {
            return self.serve_http(stream, peer, stop, deadline).await;
        };
        // Boxed: inline, the TLS path's state (rustls's connection among it) would size every
        // connection's task for it: about 6 KiB per connection instead of 2.3 KiB for plain TCP.
        Box::pin(self.serve_tls(acceptor, stream, peer, stop, deadline)).await;
    }

    /// The TLS handshake, then HTTP over it.
    async fn serve_tls(
        &self,
        acceptor: &TlsAcceptor,
        stream: TcpStream,
        peer: SocketAddr,
        stop: CancellationToken,
        deadline: Instant,
    ) {
        let handshake = tokio::select! {
            () = stop.cancelled() => return,
            r = tokio::time::timeout_at(deadline, acceptor.accept(stream).into_fallible()) => r,
        };
        match handshake {
            Ok(Ok(tls)) => self.serve_http(tls, peer, stop, deadline).await,
            Ok(Err((e, stream))) => {
                EdgeStats::count(&self.stats.tls_failures);
                tracing::debug!("TLS handshake with {peer} failed: {e}");
                linger(stream, &stop).await;
            }
            Err(_) => {
                EdgeStats::count(&self.stats.handshake_timeouts);
                tracing::debug!("closing connection from {peer}: no TLS handshake in time");
            }
        }
    }

    /// HTTP until the connection closes, then the WebSocket session if a request upgraded.
    async fn serve_http<I>(
        &self,
        io: I,
        peer: SocketAddr,
        stop: CancellationToken,
        deadline: Instant,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let first_request = Arc::new(Notify::new());
        let seen = Arc::clone(&first_request);
        let handover = Handover::default();
        let info = ConnInfo {
            peer,
            handover: handover.clone(),
        };
        let service = self.router.clone().map_request(
            move |mut req: http::Request<hyper::body::Incoming>| {
                seen.notify_one();
                req.extensions_mut().insert(info.clone());
                req
            },
        );
        let mut conn =
            pin!(self.http.serve_connection_with_upgrades(
                TokioIo::new(io),
                TowerToHyperService::new(service),
            ));
        // Completes at the deadline unless a request arrived before it.
        let mut silent = pin!(tokio::time::timeout_at(deadline, first_request.notified()));
        let mut heard = false;
        let mut stopping = false;
        loop {
            tokio::select! {
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!("connection from {peer} ended: {e}");
                    }
                    break;
                }
                waited = silent.as_mut(), if !heard => {
                    if waited.is_ok() {
                        heard = true;
                    } else {
                        EdgeStats::count(&self.stats.handshake_timeouts);
                        tracing::debug!(
                            "closing connection from {peer}: no request within {:?}",
                            self.handshake_timeout
                        );
                        return;
                    }
                }
                () = stop.cancelled(), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
        // A WebSocket upgrade ends hyper's part of the connection; the session goes on in this
        // same task, so it keeps the slot and shutdown waits for it.
        if let Some(session) = handover.take() {
            session
                .run(Arc::clone(&self.hub), peer, self.max_frame)
                .await;
        }
    }
}

/// How long a connection whose TLS handshake failed is kept half-closed, at most.
const LINGER: Duration = Duration::from_secs(1);
/// How much of what such a client still sends is read and dropped, at most.
const LINGER_BYTES: usize = 64 * 1024;

/// Closes a connection whose TLS handshake failed without resetting it. rustls has written an
/// alert saying why; closing with unread input would make the kernel send a reset, and the
/// client's kernel would then drop the alert unread. A plain-text client (which keeps sending
/// its HTTP/2 request) would only see "connection reset", when the alert is what tells it that
/// this port speaks TLS. So: send FIN after the alert, then read and drop what the client still
/// sends until it closes too, for at most [`LINGER`] and [`LINGER_BYTES`] (or until shutdown).
async fn linger(mut stream: TcpStream, stop: &CancellationToken) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        // On the heap: only failed handshakes need it, and the task's size stays as it was.
        let mut buf = vec![0u8; 4096];
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => dropped += n,
            }
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(LINGER, drain) => {}
        () = stop.cancelled() => {}
    }
}
