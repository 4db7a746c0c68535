//! chittyd's listeners and the lifetime of everything it runs: one TCP port that speaks gRPC
//! (HTTP/2) and WebSocket (HTTP/1.1 upgrade), the admin socket, the metrics port, and the one
//! shutdown sequence (`Server::run`).
//!
//! The accept loop is ours rather than tonic's so that one port can carry both protocols, every
//! connection is one tracked task from accept to close (WebSocket sessions included, see
//! [`connection`]), and the edge is guarded before any HTTP is read: per-address limits close
//! surplus connections at once ([`limits`]), TLS (when configured, [`tls`]) and the first
//! request must both arrive within the handshake timeout, and a failing `accept` (out of file
//! descriptors) backs off with a growing wait instead of spinning. The edge counts what it
//! refuses in its own [`stats::EdgeStats`], logged at most once per [`accept::LOG_EVERY`].

mod accept;
pub mod admin;
pub mod admin_socket;
pub mod chat;
mod connection;
pub mod limits;
pub mod listen;
pub mod metrics;
pub mod stats;
mod tasks;
pub mod tls;
pub mod web;
pub mod websocket;

pub use connection::ConnInfo;

use crate::audit::{self, AuditConfig, AuditError};
use crate::cluster::replication::{self, Replication};
use crate::cluster::{Cluster, ClusterConfig, ClusterError};
use crate::hub::{Hub, HubConfig, SystemClocks};
use crate::state::{self, StateConfig, StateError, StateWriter};
use crate::systemd;
use admin_socket::{AdminError, AdminSocket};
use connection::Edge;
use limits::{ConnLimits, Gate};
use listen::{ListenAddr, ListenError, Listeners};
use stats::EdgeStats;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tasks::Tasks;
use thiserror::Error;
use tls::{TlsError, TlsFiles};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// What the server tells participants when it stops.
pub const SHUTDOWN_NOTICE: &str = "Chitty-Chat server is shutting down";

/// Everything `Server::bind` needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address of the chat port (every address a host name resolves to).
    pub listen: ListenAddr,
    /// How long shutdown waits for participants' streams to finish before closing them.
    pub shutdown_grace: Duration,
    /// Largest frame accepted from a client, in bytes.
    pub max_frame: usize,
    /// The hub's limits.
    pub hub: HubConfig,
    /// The audit trail's sinks.
    pub audit: AuditConfig,
    /// Where the admin socket goes; `None` serves no admin interface.
    pub admin_socket: Option<PathBuf>,
    /// Whether failing to create the admin socket only warns (the built-in default path, which
    /// a user running chittyd by hand may not be allowed to create) instead of failing.
    pub admin_optional: bool,
    /// Where the admin socket goes when the optional default cannot be used: the user's own
    /// runtime directory (`$XDG_RUNTIME_DIR/chitty/admin.sock`), where chittyctl looks next.
    pub admin_fallback: Option<PathBuf>,
    /// Address of the Prometheus endpoint; `None` (the default) serves none.
    pub metrics_listen: Option<ListenAddr>,
    /// Per-address limits on new and open connections, applied at accept.
    pub limits: ConnLimits,
    /// How long a new connection has to finish its TLS handshake and send its first request
    /// before it is closed (a socket that connects and says nothing holds a descriptor).
    pub handshake_timeout: Duration,
    /// Serve the chat port over TLS with these files; `None` (the default) serves plain TCP.
    pub tls: Option<TlsFiles>,
    /// Where the Lamport clock, the user ids and the bans are kept across restarts; `None` (the
    /// default) keeps nothing: every start is at Lamport time 0, with ids from 1 and no bans.
    pub state: Option<StateConfig>,
    /// Whether a state directory that cannot be created or opened only warns (the built-in
    /// per-user default) instead of failing. A corrupt file, or one in use, always fails.
    pub state_optional: bool,
    /// The NATS JetStream cluster to join (`--cluster`); `None` (the default) is a single node
    /// that needs no NATS.
    pub cluster: Option<ClusterConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)).into(),
            shutdown_grace: Duration::from_secs(5),
            max_frame: 4096,
            hub: HubConfig::default(),
            audit: AuditConfig::default(),
            admin_socket: None,
            admin_optional: false,
            admin_fallback: None,
            metrics_listen: None,
            limits: ConnLimits::default(),
            handshake_timeout: Duration::from_secs(10),
            tls: None,
            state: None,
            state_optional: false,
            cluster: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The chat port could not be bound.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The audit trail could not be opened.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The admin socket could not be set up.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The metrics port could not be bound.
    #[error("metrics endpoint: {0}")]
    Metrics(ListenError),
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The saved state cannot be read or written (a configuration error: a corrupt file, one
    /// from a newer chittyd, a directory in use or not writable).
    #[error(transparent)]
    State(#[from] StateError),
    /// The cluster link could not be set up (`--cluster`).
    #[error("cluster: {0}")]
    Cluster(#[from] ClusterError),
    /// A signal handler could not be installed.
    #[error("installing the {signal} handler: {source}")]
    Signal {
        /// Which signal.
        signal: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

impl ServerError {
    /// Whether the configuration is at fault, so that starting again is pointless until it is
    /// fixed (see [`crate::exit`]): a value that cannot work (a name that does not resolve, a
    /// port that needs privileges, TLS files that cannot be used, a path chittyd may not
    /// create). A port still held by a stopping process or an address the network has not
    /// configured yet may pass, and so may anything else.
    pub fn is_configuration(&self) -> bool {
        match self {
            ServerError::Listen(e) | ServerError::Metrics(e) => e.is_configuration(),
            ServerError::Audit(e) => e.is_configuration(),
            ServerError::Admin(e) => e.is_configuration(),
            ServerError::Tls(_) => true,
            ServerError::State(e) => e.is_configuration(),
            ServerError::Cluster(e) => e.is_configuration(),
            ServerError::Signal { .. } => false,
        }
    }
}

/// A bound, not yet serving chittyd.
pub struct Server {
    config: ServerConfig,
    listener: Listeners,
    admin: Option<AdminSocket>,
    metrics: Option<Listeners>,
    hub: Arc<Hub>,
    edge: Arc<EdgeStats>,
    audit_writer: Option<audit::AuditWriter>,
    /// The state thread, told to save for the last time at the end of the shutdown.
    state: Option<StateWriter>,
    tls: Option<TlsAcceptor>,
    /// The open-files limit after raising it, for the log line when accept runs out.
    open_files: Option<u64>,
    /// The NATS link, with `--cluster`.
    cluster: Option<Cluster>,
    /// The replication through the cluster's stream, and the watch that tells it about the NATS
    /// connection, with `--cluster`.
    replication: Option<(Replication, watch::Sender<bool>)>,
    /// Ends the replication's membership tasks at shutdown.
    cluster_stop: CancellationToken,
    /// Side tasks started before `run` (the signal handler).
    tasks: Tasks,
}

impl Server {
    /// Raises the open-files limit, loads the TLS files, opens the audit trail and binds the
    /// chat port; nothing is served until `run`.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        // Every participant is a descriptor; the soft limit (often 1024) is not what the
        // administrator allowed, the hard limit is.
        let open_files = match crate::os::raise_open_files_limit() {
            Ok(n) => {
                tracing::info!("open-files limit: {n}");
                let max = config.hub.max_participants;
                let needed = crate::os::descriptors_needed(max);
                if n < needed {
                    tracing::warn!(
                        "the open-files limit {n} is below the {needed} descriptors that \
                         --max-participants {max} needs (one per participant, plus {} for \
                         chittyd's own): connections will be refused before the room is full; \
                         raise the limit (LimitNOFILE= in the unit, ulimit -n by hand) or lower \
                         --max-participants",
                        crate::os::OWN_DESCRIPTORS
                    );
                }
                Some(n)
            }
            Err(e) => {
                tracing::warn!("cannot raise the open-files limit: {e}");
                None
            }
        };
        let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let (auditor, audit_writer) = audit::open(&config.audit)?;
        let listener = Listeners::bind(&config.listen).await?;
        let admin = match &config.admin_socket {
            None => None,
            Some(path) => match admin_socket::bind(path) {
                Ok(socket) => Some(socket),
                Err(e) if config.admin_optional => optional_admin(e, &config.admin_fallback),
                Err(e) => return Err(e.into()),
            },
        };
        let metrics = match &config.metrics_listen {
            None => None,
            Some(addr) => Some(Listeners::bind(addr).await.map_err(ServerError::Metrics)?),
        };
        let cluster = match &config.cluster {
            None => None,
            Some(c) => Some(Cluster::connect(c.clone()).await?),
        };
        // Last, once everything that can fail has been set up: it writes a reservation.
        let (restored, state) = match &config.state {
            None => (state::Restored::fresh(), None),
            Some(_) if cluster.is_some() => {
                tracing::info!(
                    "cluster: the state directory is not used: the cluster's stream and bucket                      hold the Lamport clock, the ids and the bans"
                );
                (state::Restored::fresh(), None)
            }
            Some(c) => match state::open(c) {
                Ok((restored, writer)) => (restored, Some(writer)),
                Err(e @ StateError::Dir { .. }) if config.state_optional => {
                    tracing::warn!(
                        "{e}; running without saved state: Lamport times and user ids start \
                         again at 0 and bans are not kept (see --state-dir)"
                    );
                    (state::Restored::fresh(), None)
                }
                Err(e) => return Err(e.into()),
            },
        };
        let hub = Hub::restored(
            config.hub.clone(),
            auditor,
            Arc::new(SystemClocks),
            restored,
        );
        let cluster_stop = CancellationToken::new();
        let replication = match &cluster {
            None => None,
            Some(c) => {
                let (link_tx, link) = watch::channel(true);
                let address = listener.describe();
                let r = replication::start(c, &hub, &address, link, cluster_stop.clone()).await?;
                Some((r, link_tx))
            }
        };
        Ok(Server {
            config,
            listener,
            admin,
            metrics,
            hub,
            edge: Arc::default(),
            audit_writer,
            state,
            tls,
            open_files,
            cluster,
            replication,
            cluster_stop,
            tasks: Tasks::default(),
        })
    }

    /// The bound chat address (useful with port 0); the first one, when a host name stands
    /// for several.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs()[0]
    }

    /// Every bound chat address.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listener.local_addrs()
    }

    /// The admin socket's path, if one is served.
    pub fn admin_socket(&self) -> Option<&std::path::Path> {
        self.admin.as_ref().map(AdminSocket::path)
    }

    /// The bound metrics address, if any (the first one, when a host name stands for several).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
            .as_ref()
            .and_then(|l| l.local_addrs().first().copied())
    }

    /// The hub, for callers that embed the server.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The edge's counters (accepts, refusals, handshakes, open connections).
    pub fn edge_stats(&self) -> &Arc<EdgeStats> {
        &self.edge
    }

    /// Makes SIGTERM and SIGINT cancel `stop` (a graceful shutdown) and SIGHUP (logrotate,
    /// `systemctl reload`) reopen the audit file, from a task the server owns. Nothing else is
    /// reloaded: every other option comes from the command line or the environment, which a
    /// running process cannot read again.
    pub fn handle_signals(&mut self, stop: CancellationToken) -> Result<(), ServerError> {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind: SignalKind, name: &'static str| {
            signal(kind).map_err(|source| ServerError::Signal {
                signal: name,
                source,
            })
        };
        let mut term = install(SignalKind::terminate(), "SIGTERM")?;
        let mut int = install(SignalKind::interrupt(), "SIGINT")?;
        let mut hup = install(SignalKind::hangup(), "SIGHUP")?;
        let reopen = self.audit_writer.as_ref().map(|w| w.reopen_handle());
        self.tasks.spawn("signals", async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
                    _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
                    _ = hup.recv() => match &reopen {
                        Some(reopen) => {
                            tracing::info!(
                                "SIGHUP: reopening the audit file (other options take effect \
                                 on a restart)"
                            );
                            reopen.notify_one();
                        }
                        None => tracing::info!(
                            "SIGHUP: no audit file to reopen (other options take effect on a \
                             restart)"
                        ),
                    },
                }
            }
            stop.cancel();
        });
        Ok(())
    }

    /// Serves until `shutdown` is cancelled, then shuts down gracefully (see [`Stopping`]):
    /// tells every participant, lets connections end within the grace period, and writes every
    /// audit record before returning.
    pub async fn run(self, shutdown: CancellationToken) {
        let Server {
            config,
            mut listener,
            admin,
            metrics,
            hub,
            edge,
            audit_writer,
            state,
            tls,
            open_files,
            cluster,
            replication,
            cluster_stop,
            mut tasks,
        } = self;
        let audit_stop = CancellationToken::new();
        let audit_task = audit_writer.map(|w| tokio::spawn(w.run(audit_stop.clone())));
        let figures = replication.as_ref().map(|(r, _)| Arc::clone(&r.stats));
        if let Some(socket) = admin {
            let cluster = figures
                .clone()
                .zip(config.cluster.as_ref())
                .map(|(stats, c)| admin::ClusterInfo {
                    stats,
                    node_timeout: c.node_timeout,
                });
            let service = admin::AdminService::new(Arc::clone(&hub), Arc::clone(&edge), cluster);
            tasks.spawn("admin", serve_admin(socket, service, shutdown.clone()));
        }
        if let Some(listener) = metrics {
            let serve = metrics::serve(
                listener,
                Arc::clone(&hub),
                Arc::clone(&edge),
                figures,
                shutdown.clone(),
            );
            tasks.spawn("metrics", serve);
        }
        tasks.spawn(
            "systemd",
            systemd::supervise(Arc::clone(&hub), shutdown.clone()),
        );

        let (health, router) = routes(&hub, config.max_frame).await;
        // Not one of `tasks`: it must have ended before the shutdown sets health NOT_SERVING,
        // or a NATS connection coming back could set SERVING after it.
        let (replication, link) = match replication {
            Some((r, link)) => (Some(r), Some(link)),
            None => (None, None),
        };
        let cluster = cluster.map(|c| {
            let health = health.clone();
            let stop = shutdown.clone();
            let hub = Arc::clone(&hub);
            tokio::spawn(async move {
                let report = move |serving| {
                    let health = health.clone();
                    // The hub admits nothing from the moment health says NOT_SERVING (and the
                    // grace task, told next, times the rest).
                    hub.set_link(serving);
                    if let Some(link) = &link {
                        link.send_replace(serving);
                    }
                    hub.audit_link(serving, link_detail(serving));
                    async move { set_health(&health, serving).await }
                };
                c.supervise(stop, report).await
            })
        });
        let edge_conn = Edge::new(router, &config, tls, Arc::clone(&edge), Arc::clone(&hub));
        let gate = Gate::new(config.limits, Arc::clone(&edge));
        let listening = listener.describe();
        let scheme = if edge_conn.tls() { " (TLS)" } else { "" };
        tracing::info!("chittyd listening on {listening}{scheme}");
        systemd::notify_ready(&hub, &listening);
        let connections =
            accept::accept_until(&mut listener, &edge_conn, &gate, &shutdown, open_files).await;
        drop(listener);
        Stopping {
            hub,
            health,
            cluster,
            replication: replication.map(|r| (r, cluster_stop)),
            connections,
            tasks,
            audit: audit_task.map(|task| (audit_stop, task)),
            state,
            grace: config.shutdown_grace,
        }
        .run()
        .await;
    }
}

/// The chat port's routes: the Chat service, health and reflection (gRPC), `GET /` for WebSocket
/// and people (the chat page in a browser, the text at `/about` otherwise), and the page's files.
async fn routes(hub: &Arc<Hub>, max_frame: usize) -> (HealthReporter, axum::Router) {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(chat::CHAT_SERVICE, ServingStatus::Serving)
        .await;
    let routes = tonic::service::Routes::new(chat::ChatService::new(Arc::clone(hub), max_frame))
        .add_service(health_service);
    let mut router = add_reflection(routes)
        .prepare()
        .into_axum_router()
        .route("/", axum::routing::get(websocket::handle))
        .route("/about", axum::routing::get(web::about));
    for path in web::asset_paths() {
        router = router.route(path, axum::routing::get(web::asset));
    }
    let router = router.fallback(not_found);
    (health, router)
}

/// Everything that is still running when the accept loop returns, and the order in which it is
/// stopped. This is the one place the shutdown sequence is written down:
///
/// 1. STOPPING=1 to systemd, the cluster link's watch ended (it ends on the token, and it too
///    sets health), health NOT_SERVING (the listener is already closed);
/// 2. the hub shuts down: no new sessions, the notice to everyone, every outbox ended cleanly so
///    what is queued still goes out;
/// 3. the connection set is closed (the accept loop has returned, so nothing is added to it)
///    and every connection asked to finish (each watches the token: HTTP/2 GOAWAY, HTTP/1
///    close, WebSocket close 1000 once its outbox has drained);
/// 4. connections get `--shutdown-grace` to end, then the rest are aborted;
/// 5. the side tasks (signals, systemd, admin, metrics) end on the token within the same grace,
///    or are named and aborted;
/// 6. the audit trail is drained and flushed, so every record above is in it;
/// 7. the state is saved with the exact counters, last, once nothing takes a Lamport time any
///    more, so a restart continues right after the last one.
struct Stopping {
    hub: Arc<Hub>,
    health: HealthReporter,
    /// The task following the NATS connection (`Cluster::supervise`), with `--cluster`.
    cluster: Option<tokio::task::JoinHandle<()>>,
    /// The replication and the token of its membership tasks, with `--cluster`.
    replication: Option<(Replication, CancellationToken)>,
    connections: JoinSet<()>,
    tasks: Tasks,
    audit: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
    state: Option<StateWriter>,
    grace: Duration,
}

impl Stopping {
    async fn run(mut self) {
        systemd::notify_stopping();
        if let Some(cluster) = self.cluster.take() {
            let _ = cluster.await;
        }
        set_health(&self.health, false).await;
        let ended = self.hub.shutdown(SHUTDOWN_NOTICE);
        let sessions = if ended == 1 { "session" } else { "sessions" };
        tracing::info!("shutting down: ended {ended} {sessions}");
        if let Some((replication, stop)) = self.replication.take() {
            // The leaves of this node's sessions are queued: publish them and the node's own
            // departure, then stop.
            self.hub.leave_cluster();
            stop.cancel();
            replication.finish(REPLICATION_PATIENCE).await;
        }
        let deadline = tokio::time::Instant::now() + self.grace;
        let drained = tokio::time::timeout_at(deadline, async {
            while self.connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "{} connections still open after {:?}; closing them",
                self.connections.len(),
                self.grace
            );
            self.connections.shutdown().await;
        }
        self.tasks.finish(deadline).await;
        if let Some((stop, task)) = self.audit {
            stop.cancel();
            let _ = task.await;
        }
        if let Some(state) = self.state {
            state.finish().await;
        }
        tracing::info!("chittyd stopped at Lamport time {}", self.hub.clock().now());
    }
}

/// The chat service's and the server's health (gRPC `grpc.health.v1.Health`).
async fn set_health(health: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for service in [chat::CHAT_SERVICE, ""] {
        health.set_service_status(service, status).await;
    }
}

/// What the audit trail says when this node loses NATS or has it back.
fn link_detail(up: bool) -> &'static str {
    if up {
        "NATS is back and the stream checked: this node admits participants again"
    } else {
        "this node lost NATS: it admits no one until NATS is back, and ends its sessions after \
         --cluster-grace"
    }
}

/// How long a stopping node gives its last events (its participants' leaves) to reach the
/// cluster's stream.
const REPLICATION_PATIENCE: Duration = Duration::from_secs(2);

/// The optional default admin socket could not be created (chittyd run by hand, without
/// permission for /run/chitty): the user's runtime directory, if there is one, else none.
fn optional_admin(e: AdminError, fallback: &Option<PathBuf>) -> Option<AdminSocket> {
    let Some(path) = fallback else {
        tracing::warn!("{e}; serving without the admin interface (see --admin-socket)");
        return None;
    };
    match admin_socket::bind(path) {
        Ok(socket) => {
            tracing::info!("{e}; using {} instead", path.display());
            Some(socket)
        }
        Err(e2) => {
            tracing::warn!("{e}; {e2}; serving without the admin interface (see --admin-socket)");
            None
        }
    }
}

/// Serves the admin service on its socket until `stop`, then removes the socket file (and the
/// directories created for it) by dropping it.
async fn serve_admin(
    mut socket: AdminSocket,
    service: admin::AdminService,
    stop: CancellationToken,
) {
    let Some(listener) = socket.take_listener() else {
        return;
    };
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let service = crate::pb::admin::admin_server::AdminServer::new(service);
    tracing::info!("admin interface on {}", socket.path().display());
    if let Err(e) = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, stop.cancelled())
        .await
    {
        tracing::error!("admin interface failed: {e}");
    }
    drop(socket);
}

/// Server reflection (v1 and v1alpha), so grpcurl and friends work without our proto files.
fn add_reflection(routes: tonic::service::Routes) -> tonic::service::Routes {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::pb::CHAT_DESCRIPTOR)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let routes = match builder().build_v1() {
        Ok(v1) => routes.add_service(v1),
        Err(e) => {
            tracing::error!("reflection v1 unavailable: {e}");
            routes
        }
    };
    match builder().build_v1alpha() {
        Ok(v1alpha) => routes.add_service(v1alpha),
        Err(e) => {
            tracing::error!("reflection v1alpha unavailable: {e}");
            routes
        }
    }
}

/// Anything else on the chat port: gRPC clients get UNIMPLEMENTED, HTTP clients (including
/// WebSocket upgrades on other paths) get 404.
async fn not_found(req: http::Request<axum::body::Body>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        tonic::Status::unimplemented(format!("no such method: {}", req.uri().path()))
            .into_http::<axum::body::Body>()
    } else {
        (
            http::StatusCode::NOT_FOUND,
            "not found: browsers and WebSocket clients connect to /, gRPC clients call \
             chitty_chat.Chat\n",
        )
            .into_response()
    }
}
