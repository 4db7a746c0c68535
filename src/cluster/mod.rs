//! chittyd's link to NATS JetStream, for `--cluster`: the connection (credentials, a private
//! CA), the room's stream and the state bucket (created when missing, and a start refused when
//! what exists cannot serve, naming every difference), and the link's health: lost, then back
//! (with the stream and the bucket checked again) as the NATS client reports it.
//!
//! The replication itself is `replication` (publisher, applier, membership, snapshots, grace)
//! and, transport-free, `hub::replica`; ARCHITECTURE.md, "The cluster", has the whole picture.
//!
//! nats-server 2.9 (Debian 12's) and current releases are both supported. What 2.9 changes for
//! the client: its account information cannot be read by async-nats, so `query_account` and
//! `create_key_value` (which calls it) fail; the bucket's stream is created here as a plain
//! stream (`stream::bucket`) and opened with `get_key_value`. The crate's `server_2_1x`
//! features stay off: they add fields that only newer servers know.

mod names;
pub mod replication;
mod stats;
pub mod stream;

pub use names::{NatsUrls, cluster_name, node_from_host, node_name};

use async_nats::jetstream::{self, ErrorCode, context::GetStreamErrorKind, kv};
use async_nats::{ConnectErrorKind, Event};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How soon the stream and the bucket are checked again after NATS came back but the check
/// failed (JetStream may still be recovering its streams).
pub const RECHECK: Duration = Duration::from_secs(1);

/// How long a NATS connection attempt may take before the next address is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where JetStream keeps the stream and the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Storage {
    /// On disk on the NATS servers: survives their restart.
    File,
    /// In the NATS servers' memory: faster, lost when they all restart.
    Memory,
}

impl From<Storage> for jetstream::stream::StorageType {
    fn from(s: Storage) -> Self {
        match s {
            Storage::File => jetstream::stream::StorageType::File,
            Storage::Memory => jetstream::stream::StorageType::Memory,
        }
    }
}

/// Everything the cluster link needs, from `--cluster` and its companions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The NATS servers.
    pub urls: NatsUrls,
    /// This node's name: its subject `<cluster>.ev.<node>`, and what the other nodes call it.
    pub node: String,
    /// The cluster's name: the stream `<name>` (subjects `<name>.>`) and the bucket `<name>`.
    pub name: String,
    /// A NATS credentials file (user JWT and NKey seed).
    pub creds: Option<PathBuf>,
    /// A CA certificate (PEM) the NATS servers' certificates are checked against; asks for TLS.
    pub ca: Option<PathBuf>,
    /// Where JetStream keeps the stream and the bucket.
    pub storage: Storage,
    /// How many NATS servers hold a copy of each.
    pub replicas: usize,
    /// How long a node may be silent before the others announce its participants as left.
    pub node_timeout: Duration,
    /// How long a node that lost NATS keeps its sessions, waiting for it to come back.
    pub grace: Duration,
}

/// Why the cluster link could not be set up.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// The cluster options contradict each other.
    #[error("{0}")]
    Options(String),
    /// No NATS server could be reached (or it refused us).
    #[error("cannot connect to NATS at {urls}: {reason}{hint}")]
    Connect {
        /// The URLs tried.
        urls: String,
        /// What the client said.
        reason: String,
        /// What to check.
        hint: &'static str,
        /// Whether the configuration is at fault (credentials refused, TLS), not the network.
        configuration: bool,
    },
    /// The credentials file cannot be read.
    #[error("the NATS credentials file {}: {source} (--cluster-creds)", path.display())]
    Creds {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CA certificate cannot be read.
    #[error("the NATS CA certificate {}: {source} (--cluster-ca)", path.display())]
    Ca {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// JetStream answered no to a request (creating the stream with replicas a single server
    /// cannot have, JetStream disabled for the account).
    #[error("JetStream refused {doing}: {reason}")]
    Refused {
        /// What chittyd asked for.
        doing: String,
        /// JetStream's answer.
        reason: String,
    },
    /// JetStream did not answer (not enabled on the server, or the connection went).
    #[error("no answer from JetStream {doing}: {reason}; is JetStream enabled (nats-server -js)?")]
    NoAnswer {
        /// What chittyd asked for.
        doing: String,
        /// What the client said.
        reason: String,
    },
    /// A stream by the cluster's name exists and cannot serve it.
    #[error(
        "the NATS stream {stream:?} exists but cannot serve cluster {cluster:?}: {}; choose \
         another --cluster-name, or remove the stream (nats stream rm {stream}) if nothing else \
         uses it",
        differences.join("; ")
    )]
    Incompatible {
        /// The stream.
        stream: String,
        /// The cluster name.
        cluster: String,
        /// Every difference, in words.
        differences: Vec<String>,
    },
}

impl ClusterError {
    /// Whether starting again is pointless until the configuration is fixed (exit status 78):
    /// credentials or certificates that cannot be used, an incompatible stream, a request
    /// JetStream refuses. A server that is not there, or does not answer, may come.
    pub fn is_configuration(&self) -> bool {
        match self {
            ClusterError::Connect { configuration, .. } => *configuration,
            ClusterError::NoAnswer { .. } => false,
            ClusterError::Options(_)
            | ClusterError::Creds { .. }
            | ClusterError::Ca { .. }
            | ClusterError::Refused { .. }
            | ClusterError::Incompatible { .. } => true,
        }
    }
}

/// What the start found of the stream or the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// It was missing and chittyd created it.
    Created,
    /// It was there and will do.
    Reused,
}

/// The connection's state as the client reported it last. A watch holds only the latest, which
/// is all that matters; `connects` counts connections so that a loss and a return in quick
/// succession are still seen as a new connection (the stream is checked again).
#[derive(Debug, Clone, Copy, Default)]
struct Link {
    connected: bool,
    connects: u64,
}

/// A connected cluster link: the NATS client, JetStream, the state bucket.
pub struct Cluster {
    config: ClusterConfig,
    client: async_nats::Client,
    jetstream: jetstream::Context,
    /// The state bucket (the snapshot a late node starts from).
    bucket: kv::Store,
    /// What the client's event callback last said about the connection.
    link: watch::Receiver<Link>,
}

impl Cluster {
    /// Connects to NATS and makes sure the stream and the bucket exist and will do; logs what it
    /// found or made.
    pub async fn connect(config: ClusterConfig) -> Result<Cluster, ClusterError> {
        let (link_tx, link) = watch::channel(Link::default());
        let options = options(&config, Arc::new(link_tx)).await?;
        let client = options
            .connect(config.urls.urls())
            .await
            .map_err(|e| connect_error(&config.urls, &e))?;
        let info = client.server_info();
        tracing::info!(
            "cluster: connected to NATS {} (nats-server {}) at {} as node {:?}",
            info.server_name,
            info.version,
            config.urls,
            config.node
        );
        let jetstream = jetstream::new(client.clone());
        let bucket = ensure(&jetstream, &config).await?;
        Ok(Cluster {
            config,
            client,
            jetstream,
            bucket,
            link,
        })
    }

    /// The configuration it was connected with.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The JetStream context, for the replication and for tests.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// The state bucket.
    pub fn bucket(&self) -> &kv::Store {
        &self.bucket
    }

    /// Follows the connection until `stop`: reports `false` when it is lost and `true` once it
    /// is back and the stream and the bucket have been checked again (a server restarted
    /// without its store, or with memory storage, gets them created anew). Then flushes and
    /// closes the connection.
    pub async fn supervise<F>(mut self, stop: CancellationToken, mut report: impl FnMut(bool) -> F)
    where
        F: Future<Output = ()>,
    {
        // The first connection is the one `connect` checked.
        let mut checked = 1;
        let mut serving = true;
        let mut recheck = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                changed = self.link.changed() => if changed.is_err() { break },
                () = tokio::time::sleep(RECHECK), if recheck => {}
            }
            let link = *self.link.borrow_and_update();
            if !link.connected {
                recheck = false;
                if serving {
                    serving = false;
                    tracing::warn!(
                        "cluster: lost the connection to NATS ({}); health NOT_SERVING until it \
                         is back",
                        self.config.urls
                    );
                    report(false).await;
                }
                continue;
            }
            if serving && link.connects == checked {
                continue;
            }
            match ensure(&self.jetstream, &self.config).await {
                Ok(bucket) => {
                    self.bucket = bucket;
                    checked = link.connects;
                    recheck = false;
                    if !serving {
                        serving = true;
                        tracing::info!(
                            "cluster: NATS is back (nats-server {}); health SERVING",
                            self.client.server_info().version
                        );
                        report(true).await;
                    }
                }
                Err(e) => {
                    recheck = true;
                    if serving {
                        serving = false;
                        report(false).await;
                    }
                    tracing::warn!("cluster: {e}; health NOT_SERVING, checking again");
                }
            }
        }
        if let Ok(Err(e)) = tokio::time::timeout(RECHECK, self.client.flush()).await {
            tracing::debug!("cluster: flushing the NATS connection: {e}");
        }
    }
}

/// The client's options: its name, credentials, CA, a quick reconnect (see the delay), and the
/// event callback that keeps `link` current.
async fn options(
    config: &ClusterConfig,
    link: Arc<watch::Sender<Link>>,
) -> Result<async_nats::ConnectOptions, ClusterError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("chittyd {}", config.node))
        .connection_timeout(CONNECT_TIMEOUT)
        // Reconnect soon (50 ms doubling, at most 1 s apart): a node waits for NATS within
        // --cluster-grace, a few seconds, and a loopback or LAN reconnect is cheap.
        .reconnect_delay_callback(|attempts| {
            let shift = attempts.min(5) as u32;
            Duration::from_millis(50 << shift).min(Duration::from_secs(1))
        })
        .event_callback(move |event| {
            let link = Arc::clone(&link);
            async move {
                match event {
                    Event::Connected => link.send_modify(|l| {
                        l.connected = true;
                        l.connects += 1;
                    }),
                    Event::Disconnected | Event::Closed => {
                        link.send_modify(|l| l.connected = false)
                    }
                    Event::LameDuckMode => {
                        tracing::warn!("cluster: the NATS server is going away (lame duck mode)")
                    }
                    other => tracing::debug!("cluster: NATS {other}"),
                }
            }
        });
    if let Some(path) = &config.creds {
        options = options
            .credentials_file(path)
            .await
            .map_err(|source| ClusterError::Creds {
                path: path.clone(),
                source,
            })?;
    }
    if let Some(path) = &config.ca {
        // The client reads it only when it connects; read it now to say what is wrong with it.
        std::fs::read(path).map_err(|source| ClusterError::Ca {
            path: path.clone(),
            source,
        })?;
        options = options
            .add_root_certificates(path.clone())
            .require_tls(true);
    }
    Ok(options)
}

/// The client's connect error in words, with what to check.
fn connect_error(urls: &NatsUrls, e: &async_nats::ConnectError) -> ClusterError {
    let (hint, configuration) = match e.kind() {
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
            ("; check --cluster-creds", true)
        }
        ConnectErrorKind::Tls => ("; check --cluster-ca and the tls:// URL", true),
        ConnectErrorKind::ServerParse => ("; check --cluster", true),
        _ => ("; is nats-server running there? (--cluster)", false),
    };
    ClusterError::Connect {
        urls: urls.to_string(),
        reason: e.to_string(),
        hint,
        configuration,
    }
}

/// Makes sure the room's stream and the bucket exist and will do; returns the bucket.
async fn ensure(
    js: &jetstream::Context,
    config: &ClusterConfig,
) -> Result<kv::Store, ClusterError> {
    let room = stream::room(&config.name, config.storage, config.replicas);
    let (found, have) = ensure_stream(js, &config.name, room, stream::room_differences).await?;
    tracing::info!(
        "cluster: stream {:?} {} (subjects {}.>, {} storage, replicas {}, max age {}, max \
         bytes {})",
        config.name,
        describe(found),
        config.name,
        stream::storage(config.storage.into()),
        config.replicas,
        humantime::format_duration(have.max_age),
        have.max_bytes
    );
    if stream::unbounded(&have) {
        tracing::warn!(
            "cluster: stream {:?} keeps every event forever (no age, size or count limit); \
             chitty creates it with a limit of {} and {} MiB",
            config.name,
            humantime::format_duration(stream::MAX_AGE),
            stream::MAX_BYTES >> 20
        );
    }
    let bucket = stream::bucket(&config.name, config.storage, config.replicas);
    let name = bucket.name.clone();
    let (found, _) = ensure_stream(js, &config.name, bucket, stream::bucket_differences).await?;
    tracing::info!("cluster: bucket {:?} {}", config.name, describe(found));
    js.get_key_value(config.name.as_str())
        .await
        .map_err(|e| ClusterError::NoAnswer {
            doing: format!("opening the bucket {name}"),
            reason: e.to_string(),
        })
}

fn describe(found: Found) -> &'static str {
    match found {
        Found::Created => "created",
        Found::Reused => "found and reused",
    }
}

/// Creates the stream `want` when missing; otherwise checks it with `differences`. Returns
/// which, and the stream's configuration as the server has it.
async fn ensure_stream(
    js: &jetstream::Context,
    cluster: &str,
    want: jetstream::stream::Config,
    differences: fn(&jetstream::stream::Config, &jetstream::stream::Config) -> Vec<String>,
) -> Result<(Found, jetstream::stream::Config), ClusterError> {
    let check = |have: jetstream::stream::Config| {
        let differences = differences(&have, &want);
        if !differences.is_empty() {
            return Err(ClusterError::Incompatible {
                stream: want.name.clone(),
                cluster: cluster.to_owned(),
                differences,
            });
        }
        Ok((Found::Reused, have))
    };
    if let Some(have) = info(js, &want.name).await? {
        return check(have);
    }
    match js.create_stream(want.clone()).await {
        Ok(stream) => Ok((Found::Created, stream.cached_info().config.clone())),
        Err(e) => match info(js, &want.name).await? {
            // Another node created it first.
            Some(have) => check(have),
            None => Err(refusal(format!("creating the stream {}", want.name), e)),
        },
    }
}

/// The stream's configuration, `None` when there is no such stream.
async fn info(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<jetstream::stream::Config>, ClusterError> {
    match js.get_stream(name).await {
        Ok(stream) => Ok(Some(stream.cached_info().config.clone())),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                Ok(None)
            }
            GetStreamErrorKind::JetStream(j) => Err(ClusterError::Refused {
                doing: format!("reading the stream {name}"),
                reason: j.to_string(),
            }),
            _ => Err(ClusterError::NoAnswer {
                doing: format!("reading the stream {name}"),
                reason: e.to_string(),
            }),
        },
    }
}

fn refusal(doing: String, e: jetstream::context::CreateStreamError) -> ClusterError {
    use jetstream::context::CreateStreamErrorKind as Kind;
    match e.kind() {
        Kind::JetStream(j) => ClusterError::Refused {
            doing,
            reason: j.to_string(),
        },
        _ => ClusterError::NoAnswer {
            doing,
            reason: e.to_string(),
        },
    }
}
