//! The admin gRPC service (`chitty_admin.Admin`), served only on a Unix domain socket.
//!
//! The socket is the security boundary: it is created 0660, so only its owner and group (root and
//! the admin group under the packaged unit) can connect, and every call is audited with the
//! caller's uid and pid from SO_PEERCRED. There is no TCP listener for it.

use super::stats::{EdgeStats, snapshot};
use crate::hub::{Hub, Target, UserInfo, rules};
use crate::metric::Kind;
use crate::pb::admin::{self as pb, admin_server::Admin};
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::net::UnixListener;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};

/// Why the admin socket could not be set up.
#[derive(Debug, Error)]
pub enum AdminError {
    /// Another chittyd answers on the socket.
    #[error("admin socket {0} is in use by a running chittyd; not taking it over")]
    InUse(PathBuf),
    /// Whether a chittyd answers on the socket cannot be told: connecting failed for a reason
    /// other than "nobody listens" (most often permissions, when started as another user), so
    /// the socket may be live and is not touched.
    #[error(
        "cannot tell whether admin socket {path} is in use: connecting to it failed ({source}); \
         leaving it alone: run chittyd as a user who may use it, or pass another --admin-socket"
    )]
    Unverifiable {
        /// The socket path.
        path: PathBuf,
        /// Why connecting failed.
        source: io::Error,
    },
    /// Something other than a socket is at the path.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// Creating, binding or setting its mode failed.
    #[error("cannot create admin socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl AdminError {
    /// Whether the configuration is at fault (see [`crate::exit`]): another chittyd's socket, a
    /// socket chittyd may not use, a path that is not a socket or cannot be created. A socket
    /// someone else bound between the look and the bind is not.
    pub fn is_configuration(&self) -> bool {
        match self {
            AdminError::InUse(_) | AdminError::Unverifiable { .. } | AdminError::NotASocket(_) => {
                true
            }
            AdminError::Io { source, .. } => crate::os::path_error_is_configuration(source),
        }
    }
}

/// Binds the admin socket at `path`, mode 0660. A stale socket left by a crash is replaced; one
/// that a live chittyd answers on is not, and neither is one we cannot connect to for any
/// other reason: only ECONNREFUSED proves that nobody listens.
pub fn bind(path: &Path) -> Result<UnixListener, AdminError> {
    let io_err = |source| AdminError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(AdminError::NotASocket(path.to_owned()));
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(AdminError::InUse(path.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!("replacing stale admin socket {}", path.display());
                match std::fs::remove_file(path) {
                    // Gone meanwhile: nothing to replace.
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(e)),
                    _ => {}
                }
            }
            // Removed between the look and the connect.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(AdminError::Unverifiable {
                    path: path.to_owned(),
                    source,
                });
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    // Bound with the process umask (which at worst leaves out group write), then opened to the
    // group: nobody else can ever connect.
    let listener = UnixListener::bind(path).map_err(io_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io_err)?;
    Ok(listener)
}

/// The admin service.
pub struct AdminService {
    hub: Arc<Hub>,
    edge: Arc<EdgeStats>,
}

impl AdminService {
    /// Serves `hub`, and the figures of the chat port's `edge`.
    pub fn new(hub: Arc<Hub>, edge: Arc<EdgeStats>) -> Self {
        AdminService { hub, edge }
    }
}

/// Who is calling, from the socket's peer credentials.
fn actor<T>(req: &Request<T>) -> String {
    req.extensions()
        .get::<UdsConnectInfo>()
        .and_then(|c| c.peer_cred)
        .map_or_else(
            || "unknown".to_owned(),
            |c| match c.pid() {
                Some(pid) => format!("uid={} pid={pid}", c.uid()),
                None => format!("uid={}", c.uid()),
            },
        )
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn user(u: UserInfo) -> pb::User {
    pb::User {
        id: u.id,
        username: u.name,
        transport: u.transport.as_str().to_owned(),
        peer: u.peer,
        connected_since_ms: millis(u.connected_at),
        joined_lamport: u.joined_lamport,
        messages_sent: u.sent,
        messages_received: u.received,
        backlog: u.backlog as u64,
        last_activity_ms: millis(u.last_active),
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn list_users(
        &self,
        _: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let mut users: Vec<_> = self.hub.users().into_iter().map(user).collect();
        users.sort_by_key(|u| u.id);
        Ok(Response::new(pb::ListUsersResponse { users }))
    }

    async fn kick(
        &self,
        req: Request<pb::KickRequest>,
    ) -> Result<Response<pb::KickResponse>, Status> {
        let actor = actor(&req);
        let req = req.into_inner();
        let reason = if req.reason.trim().is_empty() {
            "no reason given".to_owned()
        } else {
            rules::check_text(&req.reason)
                .map_err(|e| Status::invalid_argument(format!("reason: {e}")))?;
            req.reason
        };
        let ban = (req.ban_seconds > 0)
            .then(|| Duration::from_secs(req.ban_seconds).min(crate::hub::MAX_BAN));
        let who = if req.username.is_empty() {
            Target::Id(req.id)
        } else {
            Target::Name(&req.username)
        };
        match self.hub.kick(who, &reason, ban, &actor) {
            Some(u) => {
                tracing::info!("{actor} kicked {} #{} ({reason})", u.name, u.id);
                Ok(Response::new(pb::KickResponse {
                    user: Some(user(u)),
                }))
            }
            None if req.username.is_empty() => Err(Status::not_found(format!(
                "no user {} is connected",
                req.id
            ))),
            None => Err(Status::not_found(format!(
                "no participant named {:?} is connected",
                req.username
            ))),
        }
    }

    async fn clock(
        &self,
        _: Request<pb::ClockRequest>,
    ) -> Result<Response<pb::ClockResponse>, Status> {
        Ok(Response::new(pb::ClockResponse {
            lamport: self.hub.clock().now(),
            uptime_seconds: self.hub.uptime().as_secs(),
            participants: self.hub.participants(),
            events: self
                .hub
                .stats()
                .events
                .load(std::sync::atomic::Ordering::Relaxed),
        }))
    }

    async fn stats(
        &self,
        _: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let metrics = snapshot(&self.hub, &self.edge)
            .metrics
            .into_iter()
            .map(|m| pb::Metric {
                name: m.name.to_owned(),
                help: m.help.to_owned(),
                kind: match m.kind {
                    Kind::Counter => pb::metric::Kind::Counter,
                    Kind::Gauge => pb::metric::Kind::Gauge,
                } as i32,
                value: m.value,
            })
            .collect();
        Ok(Response::new(pb::StatsResponse { metrics }))
    }

    async fn announce(
        &self,
        req: Request<pb::AnnounceRequest>,
    ) -> Result<Response<pb::AnnounceResponse>, Status> {
        let actor = actor(&req);
        let text = req.into_inner().text;
        rules::check_text(&text).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let lamport = self.hub.announce(&text, &actor);
        tracing::info!("{actor} announced at Lamport time {lamport}");
        Ok(Response::new(pb::AnnounceResponse { lamport }))
    }
}
