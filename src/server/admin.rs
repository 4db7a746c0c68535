//! The admin gRPC service (`chitty_admin.Admin`), served only on a Unix domain socket
//! ([`super::admin_socket`]).
//!
//! The socket is the security boundary: it is created 0660, so only its owner and group (root and
//! the admin group under the packaged unit) can connect, and every call is audited with the
//! caller's uid and pid from SO_PEERCRED. There is no TCP listener for it.

use super::stats::{EdgeStats, snapshot};
use crate::hub::{Hub, Target, UserInfo, rules};
use crate::metric::Kind;
use crate::pb::admin::{self as pb, admin_server::Admin};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};

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
