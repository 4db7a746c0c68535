//! chittyd's listeners: one TCP port that speaks gRPC (HTTP/2) and, later, WebSocket (HTTP/1.1
//! upgrade), and the shutdown sequence.
//!
//! The accept loop is ours rather than tonic's so that one port can carry both protocols, every
//! connection is tracked for a bounded graceful shutdown, and a failing `accept` (out of file
//! descriptors) backs off instead of spinning.

pub mod chat;

use crate::audit::{self, AuditConfig, AuditError};
use crate::hub::{Hub, HubConfig};
use crate::systemd;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// What the server tells participants when it stops.
pub const SHUTDOWN_NOTICE: &str = "Chitty-Chat server is shutting down";

/// Facts about a connection, attached to each of its requests.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
}

/// Everything `Server::bind` needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address of the chat port.
    pub listen: SocketAddr,
    /// How long shutdown waits for participants' streams to finish before closing them.
    pub shutdown_grace: Duration,
    /// Largest frame accepted from a client, in bytes.
    pub max_frame: usize,
    /// The hub's limits.
    pub hub: HubConfig,
    /// The audit trail's sinks.
    pub audit: AuditConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            shutdown_grace: Duration::from_secs(5),
            max_frame: 4096,
            hub: HubConfig::default(),
            audit: AuditConfig::default(),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The chat port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The audit trail could not be opened.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// A bound, not yet serving chittyd.
pub struct Server {
    config: ServerConfig,
    listener: TcpListener,
    hub: Arc<Hub>,
    audit_writer: Option<audit::AuditWriter>,
}

impl Server {
    /// Opens the audit trail and binds the chat port; nothing is served until `run`.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let (auditor, audit_writer) = audit::open(&config.audit)?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let hub = Hub::new(config.hub.clone(), auditor);
        Ok(Server {
            config,
            listener,
            hub,
            audit_writer,
        })
    }

    /// The bound chat address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// The hub, for callers that embed the server.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// A handle that makes the audit writer reopen its file (SIGHUP).
    pub fn audit_reopen(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.audit_writer.as_ref().map(|w| w.reopen_handle())
    }

    /// Serves until `shutdown` is cancelled, then shuts down gracefully: stops accepting, tells
    /// every participant, lets their streams end within the grace period, and writes every
    /// audit record before returning.
    pub async fn run(self, shutdown: CancellationToken) {
        let Server {
            config,
            listener,
            hub,
            audit_writer,
        } = self;
        let audit_stop = CancellationToken::new();
        let audit_task = audit_writer.map(|w| tokio::spawn(w.run(audit_stop.clone())));

        let router =
            tonic::service::Routes::new(chat::ChatService::new(Arc::clone(&hub), config.max_frame))
                .prepare()
                .into_axum_router();

        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(16)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        let graceful = GracefulShutdown::new();
        let mut connections = JoinSet::new();

        let listening = listener
            .local_addr()
            .map_or_else(|_| config.listen.to_string(), |a| a.to_string());
        tracing::info!("chittyd listening on {listening}");
        systemd::notify_ready(&hub, &listening);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            // Out of descriptors or memory, or a connection that died in the
                            // backlog: log, back off briefly, and keep serving the others.
                            tracing::warn!("accept failed: {e}; retrying in 100 ms");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let info = ConnInfo { peer };
                    let service = router.clone().map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(info);
                        req
                    });
                    let conn = http
                        .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
                        .into_owned();
                    let conn = graceful.watch(conn);
                    connections.spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!("connection from {peer} ended: {e}");
                        }
                    });
                }
            }
        }

        systemd::notify_stopping();
        drop(listener);
        let ended = hub.shutdown(SHUTDOWN_NOTICE);
        tracing::info!("shutting down: ended {ended} sessions");
        if tokio::time::timeout(config.shutdown_grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                "{} connections still open after {:?}; closing them",
                connections.len(),
                config.shutdown_grace
            );
        }
        connections.shutdown().await;
        audit_stop.cancel();
        if let Some(task) = audit_task {
            let _ = task.await;
        }
        tracing::info!("chittyd stopped at Lamport time {}", hub.clock().now());
    }
}
