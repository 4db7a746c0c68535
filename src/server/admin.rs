//! The admin gRPC service (`chitty_admin.Admin`), served only on a Unix domain socket
//! ([`super::admin_socket`]).
//!
//! The socket is the security boundary: it is created 0660, so only its owner and group (root and
//! the admin group under the packaged unit) can connect, and every call is audited with the
//! caller's uid and pid from SO_PEERCRED. There is no TCP listener for it.

use super::stats::{EdgeStats, snapshot};
use crate::cluster::replication::ReplicationStats;
use crate::hub::{BanInfo, Hub, NodeInfo, ReplicaError, Target, UserInfo, rules};
use crate::metric::Kind;
use crate::pb::admin::{self as pb, admin_server::Admin};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};

/// The admin service.
pub struct AdminService {
    hub: Arc<Hub>,
    edge: Arc<EdgeStats>,
    cluster: Option<ClusterInfo>,
}

/// What the admin service knows of the cluster beside the hub, with `--cluster`.
#[derive(Clone)]
pub struct ClusterInfo {
    /// The replication's figures (lag, publishes).
    pub stats: Arc<ReplicationStats>,
    /// How long a node may be silent before it is declared lost (`--cluster-node-timeout`):
    /// a node unheard for longer is shown as silent.
    pub node_timeout: Duration,
}

impl AdminService {
    /// Serves `hub`, the figures of the chat port's `edge`, and with `--cluster` the cluster's.
    pub fn new(hub: Arc<Hub>, edge: Arc<EdgeStats>, cluster: Option<ClusterInfo>) -> Self {
        AdminService { hub, edge, cluster }
    }

    fn replication(&self) -> Option<&ReplicationStats> {
        self.cluster.as_ref().map(|c| c.stats.as_ref())
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

/// How long a ban or unban waits for the state thread to save it before answering with a
/// warning instead (the change holds either way; only its survival across a restart is late).
const SAVE_WAIT: Duration = Duration::from_secs(5);

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn ban(b: BanInfo) -> pb::Ban {
    pb::Ban {
        username: b.name,
        until_ms: millis(b.until),
        since_ms: millis(b.since),
        reason: b.reason,
        actor: b.actor,
    }
}

/// Waits until the bans are saved; the warning to answer with if they are not.
async fn saved(hub: &Hub) -> String {
    match hub.keeper().bans_saved(SAVE_WAIT).await {
        Ok(()) => String::new(),
        Err(why) => {
            let path = hub.keeper().path().map(|p| p.display().to_string());
            let warning = format!(
                "the change holds, but it is not saved in {} yet ({why}): it would be lost if \
                 chittyd stopped now; chittyd keeps trying",
                path.unwrap_or_default()
            );
            tracing::warn!("{warning}");
            warning
        }
    }
}

/// An operator's action the cluster's stream did not apply in time (NATS lost, or too slow):
/// UNAVAILABLE, saying that it is still queued, since the publisher keeps sending it.
fn unconfirmed(e: ReplicaError) -> Status {
    Status::unavailable(format!(
        "{e}; it stays queued and takes effect if the stream takes it later. Is NATS reachable \
         from this node? (chittyctl cluster, chittyd's log)"
    ))
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
        node: u.node,
    }
}

/// A node as `chittyctl cluster` shows it: `now_ms` is the stream time of the last event this
/// node applied, `me` this node's name.
fn node(n: NodeInfo, hub: &Hub, me: &str, now_ms: u64, timeout: Duration) -> pb::Node {
    use pb::node::State;
    let silent_ms = now_ms.saturating_sub(n.heard_ms);
    let this_node = n.name == me;
    let state = if this_node {
        if hub.serving() {
            State::Serving
        } else {
            State::NotServing
        }
    } else if u128::from(silent_ms) > timeout.as_millis() {
        State::Silent
    } else {
        State::Alive
    };
    pb::Node {
        name: n.name,
        address: n.address,
        incarnation: n.incarnation,
        participants: n.participants,
        heard_ms: i64::try_from(n.heard_ms).unwrap_or(i64::MAX),
        silent_ms,
        this_node,
        state: state as i32,
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
        let kicked = self.hub.kick(who, &reason, ban, &actor).await;
        match kicked.map_err(unconfirmed)? {
            Some(u) => {
                tracing::info!("{actor} kicked {} #{} ({reason})", u.name, u.id);
                let banned = ban.is_some() && !u.name.is_empty();
                let warning = if banned {
                    saved(&self.hub).await
                } else {
                    String::new()
                };
                Ok(Response::new(pb::KickResponse {
                    user: Some(user(u)),
                    warning,
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
        let (pending, lag_micros) = self.replication().map_or((0, 0), |r| {
            (
                r.pending.load(Ordering::Relaxed),
                r.lag_micros.load(Ordering::Relaxed),
            )
        });
        Ok(Response::new(pb::ClockResponse {
            lamport: self.hub.clock().now(),
            uptime_seconds: self.hub.uptime().as_secs(),
            participants: self.hub.participants(),
            events: self.hub.stats().events.load(Ordering::Relaxed),
            node: self.hub.node_name().unwrap_or_default().to_owned(),
            applied_seq: self.hub.applied().0,
            pending,
            lag_micros,
        }))
    }

    async fn stats(
        &self,
        _: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let metrics = snapshot(&self.hub, &self.edge, self.replication())
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
        let lamport = self
            .hub
            .announce(&text, &actor)
            .await
            .map_err(unconfirmed)?;
        tracing::info!("{actor} announced at Lamport time {lamport}");
        Ok(Response::new(pb::AnnounceResponse { lamport }))
    }

    async fn list_bans(
        &self,
        _: Request<pb::ListBansRequest>,
    ) -> Result<Response<pb::ListBansResponse>, Status> {
        let bans = self.hub.bans().into_iter().map(ban).collect();
        Ok(Response::new(pb::ListBansResponse { bans }))
    }

    async fn unban(
        &self,
        req: Request<pb::UnbanRequest>,
    ) -> Result<Response<pb::UnbanResponse>, Status> {
        let actor = actor(&req);
        let name = req.into_inner().username;
        let lifted = self.hub.unban(&name, &actor).await;
        match lifted.map_err(unconfirmed)? {
            Some(lifted) => {
                tracing::info!("{actor} lifted the ban on {}", lifted.name);
                let warning = saved(&self.hub).await;
                Ok(Response::new(pb::UnbanResponse {
                    ban: Some(ban(lifted)),
                    warning,
                }))
            }
            None => Err(Status::not_found(format!("no ban on {name:?} is in force"))),
        }
    }

    async fn list_nodes(
        &self,
        _: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        let (Some(cluster), Some(me)) = (&self.cluster, self.hub.node_name()) else {
            return Err(Status::failed_precondition(
                "this chittyd is not part of a cluster (it was started without --cluster)",
            ));
        };
        let (applied_seq, now_ms) = self.hub.applied();
        let nodes = self
            .hub
            .nodes()
            .into_iter()
            .map(|n| node(n, &self.hub, me, now_ms, cluster.node_timeout))
            .collect();
        Ok(Response::new(pb::ListNodesResponse {
            nodes,
            pending: cluster.stats.pending.load(Ordering::Relaxed),
            lag_micros: cluster.stats.lag_micros.load(Ordering::Relaxed),
            applied_seq,
            node_timeout_ms: u64::try_from(cluster.node_timeout.as_millis()).unwrap_or(u64::MAX),
        }))
    }
}
