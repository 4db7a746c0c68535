//! The replicated state at one point of the stream, as a late node loads it: what a node
//! writes to the cluster's bucket (`Hub::snapshot`) and starts from (`Hub::restore`).

use super::*;

/// The replicated state at one point of the stream: what a node starting late loads instead of
/// replaying the stream from its first message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The last stream sequence applied.
    pub seq: u64,
    /// Its stream time.
    pub stream_ms: u64,
    /// The Lamport clock.
    pub lamport: u64,
    /// Every session, in id order.
    pub sessions: Vec<SnapshotSession>,
    /// The bans in force.
    pub bans: Vec<SnapshotBan>,
    /// The nodes.
    pub nodes: Vec<NodeInfo>,
    /// Where each origin's numbered events stand (`ClusterEvent.boot` and `counter`).
    #[serde(default)]
    pub origins: Vec<OriginCursor>,
}

/// The next event expected from an origin node's start: events are applied in the order their
/// origin numbered them, each once, whatever the stream did to its publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginCursor {
    /// The node's name.
    pub node: String,
    /// Its current start (`ClusterEvent.boot`).
    pub boot: u64,
    /// The counter of the next event of that start to apply.
    pub next: u64,
}

/// A session in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSession {
    /// Its id.
    pub id: u64,
    /// Its name (empty outside the room).
    pub name: String,
    /// Whether it is in the room.
    pub in_room: bool,
    /// grpc or websocket.
    pub transport: String,
    /// Its address.
    pub peer: String,
    /// Its node's incarnation.
    pub origin: u64,
    /// The Lamport time it joined at.
    pub joined_lamport: u64,
    /// When it connected (milliseconds since the Unix epoch).
    pub connected_ms: u64,
}

/// A ban in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotBan {
    /// The name as typed.
    pub name: String,
    /// When it ends and when it was given (milliseconds since the Unix epoch).
    pub until_ms: u64,
    /// When it was given.
    pub since_ms: u64,
    /// Why.
    pub reason: String,
    /// Who gave it.
    pub actor: String,
}

impl Hub {
    /// The replicated state as of the last event applied.
    pub fn snapshot(&self) -> Snapshot {
        let at = self.shown();
        let mut state = self.lock();
        let bans = state
            .bans
            .saved(at.now, at.wall)
            .into_iter()
            .map(|b| SnapshotBan {
                name: b.name,
                until_ms: wall_ms(b.until),
                since_ms: wall_ms(b.since),
                reason: b.reason,
                actor: b.actor,
            })
            .collect();
        let mut sessions: Vec<SnapshotSession> = state
            .sessions
            .iter()
            .map(|s| SnapshotSession {
                id: s.id,
                name: s.name.clone(),
                in_room: s.in_room,
                transport: s.transport.as_str().to_owned(),
                peer: s.peer.to_string(),
                origin: s.origin,
                joined_lamport: s.joined_lamport,
                connected_ms: wall_ms(crate::hub::time::as_wall(s.connected_at, at.now, at.wall)),
            })
            .collect();
        sessions.sort_unstable_by_key(|s| s.id);
        Snapshot {
            seq: state.cluster.applied,
            stream_ms: state.cluster.stream_ms,
            lamport: self.clock.now(),
            sessions,
            bans,
            nodes: state.cluster.nodes.values().cloned().collect(),
            origins: state
                .cluster
                .origins
                .iter()
                .map(|(node, &(boot, next))| OriginCursor {
                    node: node.clone(),
                    boot,
                    next,
                })
                .collect(),
        }
    }

    /// Starts this replica from a snapshot, before anything is applied: its sessions are other
    /// nodes' (or this node's earlier incarnation's, which leave when this one comes up).
    pub fn restore(&self, snapshot: &Snapshot) {
        let at = self.shown();
        let mut state = self.lock();
        if snapshot.lamport > self.clock.now() {
            self.clock.observe(snapshot.lamport - 1);
        }
        state.bans = crate::hub::bans::Bans::restore(
            snapshot
                .bans
                .iter()
                .map(|b| crate::state::SavedBan {
                    name: b.name.clone(),
                    until: from_ms(b.until_ms),
                    since: from_ms(b.since_ms),
                    reason: b.reason.clone(),
                    actor: b.actor.clone(),
                })
                .collect(),
            at.now,
            at.wall,
        );
        for s in &snapshot.sessions {
            let peer: Arc<str> = s.peer.as_str().into();
            let transport = if s.transport == "websocket" {
                Transport::WebSocket
            } else {
                Transport::Grpc
            };
            let connected_at = self.instant_of(from_ms(s.connected_ms), at);
            let opening = Opening {
                transport,
                peer: &peer,
                outbox: None,
                connected_at,
            };
            state.cluster.applying.origin = s.origin;
            let mut session = self.opened(&state, s.id, opening, s.joined_lamport, connected_at);
            if s.in_room {
                session.name = s.name.clone();
                session.key = rules::fold(&s.name);
                session.in_room = true;
                state.names.insert(session.key.clone(), s.id);
                state.room += 1;
            }
            let pos = state.sessions.len();
            state.index.insert(s.id, pos);
            state.sessions.push(session);
        }
        state.cluster.applying = Applying::default();
        state.cluster.nodes = snapshot
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.clone()))
            .collect();
        state.cluster.applied = snapshot.seq;
        state.cluster.stream_ms = snapshot.stream_ms;
        state.cluster.origins = snapshot
            .origins
            .iter()
            .map(|o| (o.node.clone(), (o.boot, o.next)))
            .collect();
    }

    /// The hub's time at wall-clock time `wall`, as this node's clocks relate the two.
    pub(super) fn instant_of(&self, wall: SystemTime, at: Shown) -> Instant {
        match at.wall.duration_since(wall) {
            Ok(ago) => at.now.checked_sub(ago).unwrap_or(at.now),
            Err(ahead) => at.now + ahead.duration(),
        }
    }
}
