//! The chat port's accept loop and each connection's life up to HTTP: the per-address limits
//! at accept, the back-off when accept fails, TLS, and the deadline for the first request.

use super::ConnInfo;
use super::limits::{self, Backoff, Gate, Slot};
use crate::hub::Hub;
use crate::throttle::Throttle;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The most often the accept loop logs refused connections or failing accepts: under a flood,
/// one line per period says how many were held back, instead of one line per connection.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The first wait after a failed accept; it doubles with each failure in a row.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(100);

/// The longest wait after failed accepts: long enough not to spin while out of descriptors,
/// short enough that the port serves again within a second once some are free.
const ACCEPT_BACKOFF_CAP: Duration = Duration::from_secs(1);

/// How often the accept loop forgets idle addresses and writes held-back log summaries.
const HOUSEKEEPING: Duration = Duration::from_secs(5);

/// Accepts connections until `shutdown`: refuses what the per-address limits refuse, backs off
/// while accept fails, and spawns every admitted connection's task into `connections`, watched
/// by `graceful`.
pub(super) async fn accept_until(
    listener: &TcpListener,
    edge: &Arc<Edge>,
    gate: &Arc<Gate>,
    graceful: &GracefulShutdown,
    connections: &mut JoinSet<()>,
    shutdown: &CancellationToken,
    open_files: Option<u64>,
) {
    let hub = &edge.hub;
    let mut refused_log = Throttle::new(LOG_EVERY);
    let mut accept_log = Throttle::new(LOG_EVERY);
    let mut backoff = Backoff::new(ACCEPT_BACKOFF_FIRST, ACCEPT_BACKOFF_CAP);
    // While set, accept waits: the last one failed.
    let mut resume_at: Option<Instant> = None;
    let mut housekeeping = tokio::time::interval_at(Instant::now() + HOUSEKEEPING, HOUSEKEEPING);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = housekeeping.tick() => {
                gate.sweep();
                let now = std::time::Instant::now();
                if let Some(n) = refused_log.flush(now) {
                    tracing::warn!(
                        "refused {n} more connections in the last {} (per-address limits)",
                        humantime::format_duration(LOG_EVERY)
                    );
                }
                if let Some(n) = accept_log.flush(now) {
                    tracing::warn!(
                        "{n} more accepts failed in the last {}",
                        humantime::format_duration(LOG_EVERY)
                    );
                }
            }
            () = tokio::time::sleep_until(resume_at.unwrap_or_else(Instant::now)),
                if resume_at.is_some() => resume_at = None,
            accepted = listener.accept(), if resume_at.is_none() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    // The client gave up while in the backlog: nothing to wait for.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
                    Err(e) => {
                        hub.stats().accept_errors.fetch_add(1, Ordering::Relaxed);
                        let wait = backoff.fail();
                        resume_at = Some(Instant::now() + wait);
                        if let Some(held) = accept_log.hit(std::time::Instant::now()) {
                            tracing::warn!(
                                "accept failed: {}; backing off {wait:?} (growing to {:?} \
                                 while it fails){}",
                                accept_failure(&e, open_files, hub),
                                ACCEPT_BACKOFF_CAP,
                                held_back(held),
                            );
                        }
                        continue;
                    }
                };
                let failed = backoff.succeed();
                if failed > 0 {
                    tracing::info!("accepting connections again after {failed} failed accepts");
                }
                hub.stats().accepted.fetch_add(1, Ordering::Relaxed);
                let slot = match gate.admit(peer.ip()) {
                    Ok(slot) => slot,
                    Err(refusal) => {
                        let counter = match refusal {
                            limits::Refusal::TooManyOpen => &hub.stats().refused_open_per_ip,
                            limits::Refusal::TooManyNew => &hub.stats().refused_new_per_ip,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        // A reset rather than an orderly close: no HTTP, and no TIME_WAIT
                        // left on our side for every refused connection of a flood.
                        let _ = stream.set_zero_linger();
                        drop(stream);
                        if let Some(held) = refused_log.hit(std::time::Instant::now()) {
                            tracing::warn!(
                                "refused a connection from {}: {}{}",
                                peer.ip(),
                                refusal.describe(gate.limits()),
                                held_back(held),
                            );
                        }
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                connections.spawn(Arc::clone(edge).serve(
                    stream,
                    peer,
                    graceful.watcher(),
                    shutdown.clone(),
                    slot,
                ));
            }
        }
    }
}

/// What every connection's task shares: how to speak HTTP, TLS and the routes.
pub(super) struct Edge {
    router: axum::Router,
    http: auto::Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    hub: Arc<Hub>,
}

impl Edge {
    /// How every connection speaks: HTTP/1.1 (WebSocket) and HTTP/2 (gRPC) on one port, TLS if
    /// configured, and the deadlines.
    pub(super) fn new(
        router: axum::Router,
        config: &super::ServerConfig,
        tls: Option<TlsAcceptor>,
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
            hub,
        })
    }

    /// Whether connections speak TLS.
    pub(super) fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves one accepted connection: TLS first if configured, then HTTP/1.1 or HTTP/2. The
    /// handshake and the first request must arrive within the handshake timeout. `slot` keeps
    /// the connection counted against its address until the task ends.
    async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        watcher: Watcher,
        stop: CancellationToken,
        slot: Slot,
    ) {
        let _slot = slot;
        let deadline = Instant::now() + self.handshake_timeout;
        let Some(acceptor) = &self.tls else {
            return self.serve_http(stream, peer, watcher, deadline).await;
        };
        // Boxed: inline, the TLS path's state (rustls's connection among it) would size every
        // connection's task for it: about 6 KiB per connection instead of 2.3 KiB for plain TCP.
        Box::pin(self.serve_tls(acceptor, stream, peer, watcher, stop, deadline)).await;
    }

    /// The TLS handshake, then HTTP over it.
    async fn serve_tls(
        &self,
        acceptor: &TlsAcceptor,
        stream: TcpStream,
        peer: SocketAddr,
        watcher: Watcher,
        stop: CancellationToken,
        deadline: Instant,
    ) {
        // The watcher is not watching yet: the handshake itself must end on shutdown, or
        // graceful shutdown would wait for it.
        let handshake = tokio::select! {
            () = stop.cancelled() => return,
            r = tokio::time::timeout_at(deadline, acceptor.accept(stream)) => r,
        };
        match handshake {
            Ok(Ok(tls)) => self.serve_http(tls, peer, watcher, deadline).await,
            Ok(Err(e)) => {
                self.hub
                    .stats()
                    .tls_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!("TLS handshake with {peer} failed: {e}");
            }
            Err(_) => {
                self.hub
                    .stats()
                    .handshake_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!("closing connection from {peer}: no TLS handshake in time");
            }
        }
    }

    async fn serve_http<I>(&self, io: I, peer: SocketAddr, watcher: Watcher, deadline: Instant)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let first_request = Arc::new(Notify::new());
        let seen = Arc::clone(&first_request);
        let info = ConnInfo { peer };
        let service = self.router.clone().map_request(
            move |mut req: http::Request<hyper::body::Incoming>| {
                seen.notify_one();
                req.extensions_mut().insert(info);
                req
            },
        );
        let conn =
            watcher.watch(self.http.serve_connection_with_upgrades(
                TokioIo::new(io),
                TowerToHyperService::new(service),
            ));
        // Never completes once a request has arrived; completes at the deadline otherwise.
        let silent = async {
            if tokio::time::timeout_at(deadline, first_request.notified())
                .await
                .is_ok()
            {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            ended = conn => if let Err(e) = ended {
                tracing::debug!("connection from {peer} ended: {e}");
            },
            () = silent => {
                self.hub
                    .stats()
                    .handshake_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    "closing connection from {peer}: no request within {:?}",
                    self.handshake_timeout
                );
            }
        }
    }
}

/// What a failed accept means, for the log.
fn accept_failure(e: &std::io::Error, open_files: Option<u64>, hub: &Hub) -> String {
    let out_of_descriptors = [rustix::io::Errno::MFILE, rustix::io::Errno::NFILE]
        .iter()
        .any(|errno| e.raw_os_error() == Some(errno.raw_os_error()));
    if !out_of_descriptors {
        return e.to_string();
    }
    let open = hub.stats().open_connections.load(Ordering::Relaxed);
    let limit = open_files.map_or_else(|| "unknown".to_owned(), |n| n.to_string());
    format!(
        "{e}: out of file descriptors with {open} connections open (open-files limit {limit}); \
         new connections wait in the listen backlog until some close (raise LimitNOFILE= or \
         lower --max-participants)"
    )
}

/// The tail of a throttled log line.
fn held_back(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more since the last report)")
    }
}
