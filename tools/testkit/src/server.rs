//! chittyd in-process: bound before the test goes on (no sleeps), with its hub and edge counters
//! at hand, and a shutdown that every test awaits, so clean shutdown is tested every time.

use crate::{PATIENCE, Raw, WsUser};
use chitty::hub::Hub;
use chitty::server::stats::EdgeStats;
use chitty::server::{Server, ServerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running chittyd and what a test looks at.
pub struct TestServer {
    /// The chat port (gRPC and WebSocket).
    pub addr: SocketAddr,
    /// The admin socket, when the config asked for one.
    pub admin: Option<PathBuf>,
    /// The metrics endpoint, when the config asked for one.
    pub metrics: Option<SocketAddr>,
    /// The hub, for its counters and sessions.
    pub hub: Arc<Hub>,
    /// The edge's counters (connections, refusals, timeouts).
    pub edge: Arc<EdgeStats>,
    /// Cancelling it starts the shutdown.
    pub stop: CancellationToken,
    /// The server's task: ends when the shutdown is complete.
    pub task: JoinHandle<()>,
}

/// Starts chittyd on 127.0.0.1:0 with `config` (its `listen` is overridden).
pub async fn start(config: ServerConfig) -> TestServer {
    start_at(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
}

/// Starts chittyd on `addr` itself: a fixed address, for a restart that comes back where the
/// clients look for it.
pub async fn start_at(addr: SocketAddr, mut config: ServerConfig) -> TestServer {
    config.listen = addr.into();
    let server = Server::bind(config).await.expect("bind chittyd");
    let addr = server.local_addr();
    let admin = server.admin_socket().map(|p| p.to_owned());
    let metrics = server.metrics_addr();
    let hub = Arc::clone(server.hub());
    let edge = Arc::clone(server.edge_stats());
    let stop = CancellationToken::new();
    let task = tokio::spawn(server.run(stop.clone()));
    TestServer {
        addr,
        admin,
        metrics,
        hub,
        edge,
        stop,
        task,
    }
}

/// The server's defaults, minus the per-session rate limit: most tests send bursts that are
/// not what they test. Tests of the limits set them explicitly.
pub fn config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.hub.rate = None;
    config
}

/// [`config`] for a node `node` of the cluster whose NATS server is at `nats_url`, with short
/// timeouts for tests (a node unheard for 2 s is lost; 1 s of grace without NATS).
pub fn cluster_config(nats_url: &str, node: &str) -> ServerConfig {
    let mut config = config();
    config.cluster = Some(chitty::cluster::ClusterConfig {
        urls: nats_url.parse().expect("a NATS URL"),
        node: node.to_owned(),
        name: "chitty".to_owned(),
        creds: None,
        ca: None,
        storage: chitty::cluster::Storage::File,
        replicas: 1,
        node_timeout: std::time::Duration::from_secs(2),
        grace: std::time::Duration::from_secs(1),
    });
    config
}

/// Starts chittyd with [`config`].
pub async fn start_default() -> TestServer {
    start(config()).await
}

impl TestServer {
    /// The chat port as a gRPC endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits until it has shut down completely.
    pub async fn shutdown(self) {
        self.stop.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("chittyd did not shut down in time")
            .expect("chittyd task panicked");
    }

    /// Opens a Broadcast stream without joining.
    pub async fn open(&self) -> Raw {
        Raw::open(&self.url()).await
    }

    /// Opens a stream, joins as `name`, and reads up to its own join notice.
    pub async fn join(&self, name: &str) -> Raw {
        let mut raw = self.open().await;
        raw.send_join(name).await;
        raw.id = raw.until_joined(name).await.sender_id;
        raw
    }

    /// Connects a WebSocket user with `query` (`""`, or `"?username=NAME"` to join the room)
    /// and reads its first frame.
    pub async fn ws(&self, query: &str) -> WsUser {
        WsUser::connect(self.addr, query).await
    }
}
