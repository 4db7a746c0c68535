//! The hub as one replica of the cluster's state machine (`--cluster`; ARCHITECTURE.md, "The
//! cluster"). The NATS side lives in `crate::cluster`; this is the transport-free, broker-free
//! half: what a node asks the stream for, and how it applies what the stream hands back.
//!
//! With a replica attached, an origin (`hub::origin`, `hub::operator`) still decides alone what
//! only it can (rules, rates, deadlines), but it does not apply: it encodes its [`Accepted`] as
//! a `ClusterEvent` and hands it to [`Outgoing`], the publisher's queue. Every node, the origin
//! included, then applies the stream in stream order ([`Hub::apply_stream`]): the stream decides
//! the order, not a node, and no participant sees an event before the stream has it. What the
//! origin waits for (a join's id, a kick's outcome) comes back through `pending`, keyed by the
//! origin's token, when its event is applied.
//!
//! What makes replicas agree: Lamport times from `apply` (`L = max(previous, client) + 1`, in
//! stream order); a session's id is the stream sequence of its opening event; times that
//! decide (bans) are the origin's wall clock carried in the event; the participant limit is
//! each node's, checked at its origin; a slow consumer's removal is asked of the stream rather
//! than done locally; only the origin audits an event, with its node and stream sequence.
//!
//! Nodes: a node's incarnation is the stream sequence of its `NodeUp`. Heartbeats, applied like
//! everything else, say when each node was last heard, in stream time; a node unheard for
//! longer than the node timeout is declared lost by whichever node notices first (`NodeLost`),
//! and its participants leave, once, since a second `NodeLost` finds nothing left to remove. A
//! node that comes back is a new incarnation; its earlier one's participants leave when its
//! `NodeUp` is applied.

mod apply;
mod publish;
mod snapshot;

pub use snapshot::{OriginCursor, Snapshot, SnapshotBan, SnapshotSession};

use super::accepted::{Accepted, Applied, Opening};
use super::outbox::{Ending, Outbox};
use super::{Hub, LeaveReason, SessionError, Shown, State, Target, TimeSource, Transport, rules};
use crate::pb::cluster::{self as pb, cluster_event::Event as Ev};
use bytes::Bytes;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

/// Why a replicated operation could not be done.
#[derive(Debug, Error)]
pub enum ReplicaError {
    /// A stream message that is not a `ClusterBatch`: skipped, by every node alike.
    #[error("stream message {seq} is not a batch of chitty cluster events: {reason}")]
    Undecodable {
        /// Its stream sequence.
        seq: u64,
        /// What the decoder said.
        reason: String,
    },
    /// The hub has no replica attached (a single node).
    #[error("this node is not part of a cluster")]
    NotReplicated,
    /// The stream did not hand the event back in time.
    #[error("the cluster's stream did not apply the event within {} s", .0.as_secs())]
    Timeout(Duration),
}

/// One event for the publisher. Its payload is a `ClusterBatch` of this one event, so the
/// publisher can send several queued events as one stream message by concatenating payloads.
/// A publish stored twice, or after a gap, is applied once and in order anyway
/// (`ClusterEvent.counter`), so no JetStream message id is needed.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// An encoded `ClusterBatch` of one `ClusterEvent`.
    pub payload: Bytes,
    /// The event takes its identity from the stream sequence (a join's or connect's session id,
    /// a node's incarnation): a stream message may carry at most one such event.
    pub sequenced: bool,
}

impl Outgoing {
    /// The payload of one stream message carrying `batch`: the events' one-event batches
    /// concatenated, which is one batch of them all.
    pub fn joined(batch: &[Outgoing]) -> Bytes {
        match batch {
            [one] => one.payload.clone(),
            events => {
                let mut joined =
                    bytes::BytesMut::with_capacity(events.iter().map(|o| o.payload.len()).sum());
                for out in events {
                    joined.extend_from_slice(&out.payload);
                }
                joined.freeze()
            }
        }
    }
}

/// Events in one stream message, at most: under load the stream's cost (a publish, its
/// acknowledgement, a delivery to every node) is paid once for this many.
const BATCH_EVENTS: usize = 256;

/// Bytes in one stream message, at most: half the stream's message limit
/// (`cluster::stream::MAX_EVENT`), a thirty-second of NATS's default payload limit.
const BATCH_BYTES: usize = 32 * 1024;

/// The publisher's end of the hub's queue to the stream.
pub struct Outbound {
    rx: mpsc::UnboundedReceiver<Outgoing>,
    queued: Arc<AtomicUsize>,
}

impl Outbound {
    /// The next event to publish, waiting for one.
    pub async fn recv(&mut self) -> Option<Outgoing> {
        let out = self.rx.recv().await;
        self.taken(out.is_some());
        out
    }

    /// The next event to publish, if one is queued.
    pub fn try_recv(&mut self) -> Option<Outgoing> {
        let out = self.rx.try_recv().ok();
        self.taken(out.is_some());
        out
    }

    /// `first` and what follows it, in order, as one stream message's events, never waiting
    /// for more: the events in `again` (to send again) first, then queued ones, up to
    /// `BATCH_EVENTS` and `BATCH_BYTES` (an event larger than that goes alone). An event that would be the message's second to take
    /// its identity from the stream sequence (`Outgoing::sequenced`) is left at the front of
    /// `again`, to open the next message.
    pub fn gather(&mut self, first: Outgoing, again: &mut VecDeque<Outgoing>) -> Vec<Outgoing> {
        let mut sequenced = first.sequenced;
        let mut bytes = first.payload.len();
        let mut batch = vec![first];
        while batch.len() < BATCH_EVENTS {
            let Some(out) = again.pop_front().or_else(|| self.try_recv()) else {
                break;
            };
            if (sequenced && out.sequenced) || bytes + out.payload.len() > BATCH_BYTES {
                again.push_front(out);
                break;
            }
            sequenced |= out.sequenced;
            bytes += out.payload.len();
            batch.push(out);
        }
        batch
    }

    /// Whether nothing is queued (for checks that drain the queue by hand).
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    fn taken(&self, taken: bool) {
        if taken {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// One message of the stream, as the node's consumer reads it.
#[derive(Debug, Clone, Copy)]
pub struct StreamEvent<'a> {
    /// Its stream sequence: its place in the one order.
    pub seq: u64,
    /// When the stream stored it, in milliseconds since the Unix epoch.
    pub stream_ms: u64,
    /// The encoded `ClusterBatch`.
    pub payload: &'a [u8],
}

/// A node of the cluster as this replica knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its name (`--node`).
    pub name: String,
    /// The stream sequence of its `NodeUp`.
    pub incarnation: u64,
    /// Where it serves participants.
    pub address: String,
    /// When it was last heard from, in stream time (milliseconds since the Unix epoch).
    pub heard_ms: u64,
    /// Its participants (sessions that entered through it), as this replica counts them.
    #[serde(default)]
    pub participants: u32,
}

/// What the hub keeps about the cluster, under its lock.
#[derive(Default)]
pub(super) struct ClusterState {
    /// Whether a replica is attached: the stream applies, the origins only publish.
    replicated: bool,
    /// The event being applied.
    pub applying: Applying,
    /// Origins waiting for their event's outcome, by token.
    pending: HashMap<u64, Pending>,
    /// The nodes, by name.
    nodes: BTreeMap<String, NodeInfo>,
    /// The last stream sequence applied, and its stream time.
    applied: u64,
    stream_ms: u64,
    /// Each origin's start and the counter of its next event, by node name: what
    /// [`ClusterState::in_order`] checks.
    origins: BTreeMap<String, (u64, u64)>,
}

impl ClusterState {
    /// Whether the stream applies events (a cluster), rather than their origin (a single node).
    pub fn replicated(&self) -> bool {
        self.replicated
    }

    /// Whether `event` is the next of its origin's start, which it then becomes; otherwise it
    /// is skipped, by every node alike. The publisher resends everything from its first
    /// unacknowledged event when a publish fails (`cluster::replication::publish`), so an
    /// event stored after a gap, or twice, is followed by its in-order copy. A node not seen
    /// yet (or not since the snapshot) is taken from wherever it stands; a known node's new
    /// start from its first event.
    fn in_order(&mut self, event: &pb::ClusterEvent) -> bool {
        if event.boot == 0 {
            return true;
        }
        match self.origins.get_mut(&event.node) {
            Some((boot, next)) if *boot == event.boot => {
                if event.counter != *next {
                    return false;
                }
                *next += 1;
                true
            }
            Some(_) if event.counter != 0 => false,
            _ => {
                self.origins
                    .insert(event.node.clone(), (event.boot, event.counter + 1));
                true
            }
        }
    }

    /// Whether `incarnation` of the node `name` is a member, as far as this replica knows.
    pub(super) fn has_node(&self, name: &str, incarnation: u64) -> bool {
        self.nodes
            .get(name)
            .is_some_and(|n| n.incarnation == incarnation)
    }
}

/// The event being applied: its stream sequence (0 outside the stream: a single node), whether
/// it entered through this node (then this node audits it), and its node's incarnation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Applying {
    pub seq: u64,
    pub local: bool,
    pub origin: u64,
}

impl Default for Applying {
    fn default() -> Self {
        Applying {
            seq: 0,
            local: true,
            origin: 0,
        }
    }
}

/// An origin waiting for its event: a new session's outbox (it has none on other nodes), and
/// where the outcome goes.
struct Pending {
    /// This node's incarnation when it published the event (0 when it was not a member): the
    /// event carries it, and its outcome comes back here even if the cluster has declared that
    /// incarnation lost since.
    incarnation: u64,
    opening: Option<OwnedOpening>,
    reply: Option<oneshot::Sender<Applied>>,
}

struct OwnedOpening {
    transport: Transport,
    peer: Arc<str>,
    outbox: Outbox,
    connected_at: Instant,
}

/// The hub's link to the publisher, and this node's identity in the cluster.
pub(super) struct Replica {
    node: String,
    address: String,
    /// Tells this start's events from an earlier start's still in the stream, and finds this
    /// start's `NodeUp` in it.
    boot: u64,
    /// The stream sequence of this node's current `NodeUp`; 0 until it is applied, and again
    /// once the cluster has declared this incarnation lost.
    incarnation: watch::Sender<u64>,
    /// Whether the NATS connection is up.
    link: AtomicBool,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    /// Events in `outgoing` the publisher has not taken yet (see `MAX_QUEUED`).
    queued: Arc<AtomicUsize>,
    /// The counter of the next event: numbered and queued under this lock, so the queue holds
    /// the events in counter order whichever task publishes (heartbeats come from the
    /// membership task, not under the hub's lock).
    sent: std::sync::Mutex<u64>,
    tokens: AtomicU64,
    /// The hub's time: an event carries its origin's wall clock when it was decided.
    time: Arc<dyn TimeSource>,
}

/// The publisher's queue holds at most this many participants' events. THE overflow rule of
/// the queue to the stream: a participant whose input finds it full (NATS is slower than what
/// the participants send) is not kept waiting and nothing it sent is dropped silently: its
/// session ends with UNAVAILABLE and the reason, like a slow consumer's, and its leave is
/// queued. Leaves, kicks and node events are always queued, so nobody's leave is ever lost;
/// they are bounded by the sessions and the nodes.
pub const MAX_QUEUED: usize = 16 * 1024;

impl Replica {
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Why participants' input is not admitted now, if it is not: the node cannot reach the
    /// stream, or the queue to it is full.
    pub(super) fn refusal(&self) -> Option<&'static str> {
        if !self.serving() {
            Some(super::origin::NOT_SERVING)
        } else if self.queued.load(Ordering::Relaxed) >= MAX_QUEUED {
            Some(QUEUE_FULL)
        } else {
            None
        }
    }

    fn incarnation(&self) -> u64 {
        *self.incarnation.borrow()
    }

    /// Whether this node may admit joins and messages: connected, and a member.
    pub(super) fn serving(&self) -> bool {
        self.link.load(Ordering::Acquire) && self.incarnation() != 0
    }

    fn token(&self) -> u64 {
        self.tokens.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Queues an event for the stream. The queue is unbounded in length but not in what can
    /// enter it: participants' input is refused while the node is not serving, and each
    /// session's reader hands over one event at a time, so its length is bounded by the
    /// sessions times one, plus leaves and node events, which must never be dropped.
    fn publish(&self, token: u64, event: Ev) {
        let mut sent = self
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = *sent;
        *sent += 1;
        let message = pb::ClusterEvent {
            node: self.node.clone(),
            incarnation: self.incarnation(),
            token,
            wall_ms: wall_ms(self.time.wall()),
            boot: self.boot,
            counter: n,
            event: Some(event),
        };
        let sequenced = message.event.as_ref().is_some_and(takes_sequence);
        let batch = pb::ClusterBatch {
            events: vec![message],
        };
        self.queued.fetch_add(1, Ordering::Relaxed);
        let out = Outgoing {
            payload: batch.encode_to_vec().into(),
            sequenced,
        };
        // Only fails once the publisher has stopped, at shutdown: nothing is applied then.
        let _ = self.outgoing.send(out);
    }
}

/// Whether an event takes its identity from the sequence of the stream message that carries it:
/// a join's or a connect's session id, a node's incarnation. A message carries at most one.
fn takes_sequence(ev: &Ev) -> bool {
    matches!(ev, Ev::Join(_) | Ev::Connect(_) | Ev::NodeUp(_))
}

/// Why a participant is cut off when the queue to the stream is full.
const QUEUE_FULL: &str = "this node's queue to the cluster's stream is full (NATS is not keeping \
                          up); reconnect";

fn wall_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn wire_of(t: Transport) -> i32 {
    match t {
        Transport::Grpc => pb::Wire::Grpc as i32,
        Transport::WebSocket => pb::Wire::Websocket as i32,
    }
}

fn transport_of(wire: i32) -> Transport {
    if wire == pb::Wire::Websocket as i32 {
        Transport::WebSocket
    } else {
        Transport::Grpc
    }
}

/// A leave's reason as the stream carries it.
fn reason_parts(reason: &LeaveReason) -> (&'static str, String) {
    let detail = match reason {
        LeaveReason::Kick(why) => why.clone(),
        LeaveReason::Violation(code) => (*code).to_owned(),
        _ => String::new(),
    };
    (reason.code(), detail)
}

/// A leave's reason from the stream. Violation codes are the hub's own (`SessionError::reason`).
fn reason_of(code: &str, detail: &str) -> LeaveReason {
    match code {
        "leave" => LeaveReason::Leave,
        "slow_consumer" => LeaveReason::SlowConsumer,
        "kick" => LeaveReason::Kick(detail.to_owned()),
        "shutdown" => LeaveReason::Shutdown,
        "node_lost" => LeaveReason::NodeLost,
        "violation" => LeaveReason::Violation(SessionError::code_of(detail)),
        _ => LeaveReason::Disconnect,
    }
}

impl Hub {
    /// Makes this hub a replica of the cluster's state machine: from here on its origins
    /// publish instead of applying. Returns the publisher's end of the queue, which tells the
    /// hub as it takes each event (`Outbound::taken`). `address` is where this node serves
    /// participants, for the other nodes' `chittyctl cluster`.
    pub fn replicate(&self, node: &str, address: &str) -> Outbound {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        // Never 0, which marks an origin that does not number its events.
        let boot = (wall_ms(SystemTime::now()) ^ u64::from(std::process::id()) << 40).max(1);
        let replica = Replica {
            node: node.to_owned(),
            address: address.to_owned(),
            boot,
            incarnation: watch::channel(0).0,
            link: AtomicBool::new(true),
            outgoing: tx,
            queued: Arc::clone(&queued),
            sent: std::sync::Mutex::new(0),
            tokens: AtomicU64::new(0),
            time: Arc::clone(&self.time),
        };
        if self.replica.set(replica).is_err() {
            tracing::warn!("the hub is already a replica; ignoring a second attach");
        }
        self.lock().cluster.replicated = true;
        Outbound { rx, queued }
    }

    pub(super) fn replica(&self) -> Option<&Replica> {
        self.replica.get()
    }

    /// This node's incarnation, 0 while it is not a member (not yet up, or declared lost).
    pub fn incarnation(&self) -> u64 {
        self.replica().map_or(0, Replica::incarnation)
    }

    /// Announces this node to the cluster and waits until its `NodeUp` is applied, so that it
    /// admits no one before it is a member. Returns its incarnation.
    pub async fn node_up(&self, patience: Duration) -> Result<u64, ReplicaError> {
        let replica = self.replica().ok_or(ReplicaError::NotReplicated)?;
        let mut incarnation = replica.incarnation.subscribe();
        replica.publish(
            replica.boot,
            Ev::NodeUp(pb::NodeUp {
                address: replica.address.clone(),
            }),
        );
        let up = incarnation.wait_for(|&i| i != 0);
        match tokio::time::timeout(patience, up).await {
            Ok(Ok(i)) => Ok(*i),
            _ => Err(ReplicaError::Timeout(patience)),
        }
    }

    /// Waits until the cluster declares this incarnation lost (this node was unheard for too
    /// long): the caller then brings the node up again as a new incarnation.
    pub async fn lost(&self) {
        let Some(replica) = self.replica() else {
            return std::future::pending().await;
        };
        let mut incarnation = replica.incarnation.subscribe();
        let _ = incarnation.wait_for(|&i| i == 0).await;
    }

    /// Says whether the NATS connection is up; while it is not, the node admits nothing.
    pub fn set_link(&self, up: bool) {
        if let Some(replica) = self.replica() {
            replica.link.store(up, Ordering::Release);
        }
    }

    /// Whether this node admits joins and messages (always, on a single node).
    pub fn serving(&self) -> bool {
        self.replica().is_none_or(Replica::serving)
    }

    /// This node's name in the cluster (`None` on a single node).
    pub fn node_name(&self) -> Option<&str> {
        self.replica().map(Replica::node)
    }

    /// Whether the NATS connection is up, as last reported (`None` on a single node).
    pub fn linked(&self) -> Option<bool> {
        self.replica().map(|r| r.link.load(Ordering::Acquire))
    }

    /// How many nodes this replica knows: a cheap figure for metrics, unlike [`Hub::nodes`].
    pub fn node_count(&self) -> usize {
        self.lock().cluster.nodes.len()
    }

    /// Tells the cluster this node is alive.
    pub fn heartbeat(&self) {
        if let Some(replica) = self.replica() {
            let participants = {
                let state = self.lock();
                state.by_transport[0] + state.by_transport[1]
            };
            replica.publish(0, Ev::Heartbeat(pb::Heartbeat { participants }));
        }
    }

    /// The nodes unheard, in stream time, for longer than `timeout`: for the caller to declare
    /// lost. This node is never among them.
    pub fn silent_nodes(&self, timeout: Duration) -> Vec<NodeInfo> {
        let Some(replica) = self.replica() else {
            return Vec::new();
        };
        let state = self.lock();
        let now = state.cluster.stream_ms;
        let timeout = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        state
            .cluster
            .nodes
            .values()
            .filter(|n| n.name != replica.node && now.saturating_sub(n.heard_ms) > timeout)
            .cloned()
            .collect()
    }

    /// Declares a node incarnation lost: its participants leave once the stream has it.
    pub fn declare_lost(&self, node: &NodeInfo) {
        if let Some(replica) = self.replica() {
            replica.publish(
                0,
                Ev::NodeLost(pb::NodeLost {
                    node: node.name.clone(),
                    incarnation: node.incarnation,
                }),
            );
        }
    }

    /// Tells the cluster this node is leaving (at shutdown, after its participants' leaves):
    /// the other nodes drop it from their list at once instead of after the node timeout.
    pub fn leave_cluster(&self) {
        if let Some(replica) = self.replica() {
            let incarnation = replica.incarnation();
            if incarnation != 0 {
                self.audit_node_left(incarnation);
                replica.publish(
                    0,
                    Ev::NodeLost(pb::NodeLost {
                        node: replica.node.clone(),
                        incarnation,
                    }),
                );
            }
        }
    }

    /// The nodes as this replica knows them, by name, with their participants counted.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let state = self.lock();
        let mut nodes: Vec<NodeInfo> = state.cluster.nodes.values().cloned().collect();
        for n in &mut nodes {
            n.participants = state
                .sessions
                .iter()
                .filter(|s| s.origin == n.incarnation)
                .count() as u32;
        }
        nodes
    }

    /// The last stream sequence applied and its stream time (0 on a single node).
    pub fn applied(&self) -> (u64, u64) {
        let state = self.lock();
        (state.cluster.applied, state.cluster.stream_ms)
    }

    /// The name of the node whose incarnation is `origin`, for the admin list.
    pub(super) fn node_of(&self, state: &State, origin: u64) -> String {
        if origin == 0 {
            return self.replica().map(|r| r.node.clone()).unwrap_or_default();
        }
        state
            .cluster
            .nodes
            .values()
            .find(|n| n.incarnation == origin)
            .map_or_else(|| format!("#{origin}"), |n| n.name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::{ClusterState, pb};

    fn event(node: &str, boot: u64, counter: u64) -> pb::ClusterEvent {
        pb::ClusterEvent {
            node: node.to_owned(),
            boot,
            counter,
            ..Default::default()
        }
    }

    #[test]
    fn an_origins_events_apply_in_their_order_once_each() {
        let mut state = ClusterState::default();
        let applied: Vec<bool> = [
            // A node first seen mid-way (a snapshot without cursors) is taken from there.
            (7, 3),
            (7, 4),
            // Lost and sent again after 6 was stored: 6 is skipped, the copies apply in order.
            (7, 6),
            (7, 5),
            (7, 6),
            // Stored twice.
            (7, 6),
            // A new start begins at its first event; the old start's stragglers are skipped.
            (9, 1),
            (9, 0),
            (7, 7),
            (9, 1),
            // Unnumbered events apply as they come.
            (0, 0),
            (0, 0),
        ]
        .iter()
        .map(|&(boot, n)| state.in_order(&event("n1", boot, n)))
        .collect();
        assert_eq!(
            applied,
            [
                true, true, false, true, true, false, false, true, false, true, true, true
            ]
        );
        // Each origin on its own.
        assert!(state.in_order(&event("n2", 5, 0)));
        assert!(state.in_order(&event("n1", 9, 2)));
    }
}
