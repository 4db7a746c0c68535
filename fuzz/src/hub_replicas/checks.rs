//! The checks once the stream is drained: the replicas agree, and the participants on
//! different nodes read the same room.

use super::{Done, Node, Slot, World};
use crate::frame::Frame;
use chitty::hub::{Hub, NodeInfo, Snapshot};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// What replicas must agree on: the Lamport clock, the snapshot (without the connection times,
/// which each node shows from its own clock) and the nodes.
pub(super) fn replicated(hub: &Arc<Hub>) -> (u64, Snapshot, Vec<NodeInfo>) {
    let mut snapshot = hub.snapshot();
    for s in &mut snapshot.sessions {
        s.connected_ms = 0;
    }
    (hub.clock().now(), snapshot, hub.nodes())
}

/// An operator's call, once the stream applied it: a kicked session is gone everywhere.
pub(super) fn operated(nodes: &[Node], done: Done) {
    match done {
        Done::Kicked(Some(info)) => {
            for (i, n) in nodes.iter().enumerate() {
                assert!(
                    n.hub.users().iter().all(|u| u.id != info.id),
                    "n{i} still lists user {} after its kick",
                    info.id
                );
            }
        }
        Done::Announced(lamport) => {
            assert!(
                lamport <= nodes[0].hub.clock().now(),
                "an announcement ahead of the clock"
            );
        }
        Done::Kicked(None) | Done::Unbanned => {}
    }
}

pub(super) fn agree(world: &World) {
    let mut hubs: Vec<(String, &Arc<Hub>)> = world
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("n{i}"), &n.hub))
        .collect();
    hubs.push(("the observer".into(), &world.observer.hub));
    if let Some(late) = &world.late {
        hubs.push(("the late replica".into(), &late.hub));
    }
    let reference = replicated(&world.nodes[0].hub);
    for (name, hub) in &hubs {
        assert_eq!(replicated(hub), reference, "{name} differs from n0");
    }
    decided(world);
    let (_, snapshot, nodes) = reference;
    let members: HashSet<u64> = nodes.iter().map(|n| n.incarnation).collect();
    for s in &snapshot.sessions {
        assert!(
            members.contains(&s.origin),
            "user {} belongs to incarnation {}, which the cluster no longer has: {nodes:?}",
            s.id,
            s.origin
        );
    }
    listed(world, &snapshot);
    same_room(&world.slots);
}

/// Nothing waits once the stream is drained, and only the nodes with sessions published.
fn decided(world: &World) {
    for (i, node) in world.nodes.iter().enumerate() {
        assert!(node.up.is_none(), "n{i}'s node_up still waits");
    }
    for (i, slot) in world.slots.iter().enumerate() {
        assert!(
            !slot.joining && slot.connecting.is_none(),
            "slot {i} (on n{}) still waits for the stream to decide its session",
            slot.node
        );
    }
    assert!(world.ops.is_empty(), "an operator's call still waits");
    assert!(world.observer.out.is_empty(), "the observer published");
    if let Some(late) = &world.late {
        assert!(late.out.is_empty(), "the late replica published");
    }
}

/// A node's session is listed, as its node's, exactly while its outbox has not ended.
fn listed(world: &World, snapshot: &Snapshot) {
    for (i, slot) in world.slots.iter().enumerate() {
        let Some(id) = slot.peer.id else { continue };
        let entry = snapshot.sessions.iter().find(|s| s.id == id);
        assert_eq!(
            entry.is_some(),
            slot.peer.ending.is_none(),
            "slot {i} (user {id} on n{}) listed: {entry:?}, ending: {:?}",
            slot.node,
            slot.peer.ending
        );
        if let Some(entry) = entry {
            let incarnation = world.nodes[slot.node].hub.incarnation();
            assert_eq!(entry.origin, incarnation, "user {id}'s node");
        }
    }
}

/// The broadcasts one participant read while it was in the room.
struct Read<'a> {
    slot: usize,
    node: usize,
    grpc: bool,
    /// Its own join's Lamport time.
    from: u64,
    /// Its last frame's, once its session ended; everything before it reached it.
    to: u64,
    broadcasts: Vec<(&'a Frame, &'a [u8])>,
}

impl<'a> Read<'a> {
    /// The broadcasts it read from Lamport time `lo` to `hi`.
    fn within(&self, lo: u64, hi: u64) -> Vec<(&'a Frame, &'a [u8])> {
        self.broadcasts
            .iter()
            .filter(|(f, _)| (lo..=hi).contains(&f.timestamp))
            .copied()
            .collect()
    }
}

fn read(i: usize, slot: &Slot) -> Option<Read<'_>> {
    let peer = &slot.peer;
    let me = peer.id?;
    let from = peer
        .frames
        .iter()
        .find(|f| f.kind == chitty::pb::chat_message::Kind::Join && f.sender_id == me)?
        .timestamp;
    let to = match (&peer.ending, peer.frames.last()) {
        (Some(_), Some(last)) => last.timestamp,
        _ => u64::MAX,
    };
    let broadcasts = peer
        .frames
        .iter()
        .zip(&peer.raw)
        .filter(|(f, _)| f.is_broadcast())
        .map(|(f, raw)| (f, raw.as_slice()))
        .collect();
    Some(Read {
        slot: i,
        node: slot.node,
        grpc: peer.transport == chitty::hub::Transport::Grpc,
        from,
        to,
        broadcasts,
    })
}

/// Participants read one room: a Lamport time names one broadcast wherever it is read, and
/// over the span two participants were both in the room they read the same broadcasts, in the
/// same order, the same bytes when their transport is the same.
fn same_room(slots: &[Slot]) {
    let reads: Vec<Read<'_>> = slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| read(i, s))
        .collect();
    let mut named: BTreeMap<u64, (&Frame, usize)> = BTreeMap::new();
    for r in &reads {
        for (f, _) in &r.broadcasts {
            let (seen, by) = named.entry(f.timestamp).or_insert((f, r.slot));
            assert_eq!(
                *seen, *f,
                "Lamport time {} names two broadcasts (slots {by} and {})",
                f.timestamp, r.slot
            );
        }
    }
    for (k, a) in reads.iter().enumerate() {
        for b in &reads[k + 1..] {
            let (lo, hi) = (a.from.max(b.from), a.to.min(b.to));
            if lo > hi {
                continue;
            }
            let (fa, fb) = (a.within(lo, hi), b.within(lo, hi));
            let frames =
                |v: &[(&Frame, &[u8])]| v.iter().map(|(f, _)| (*f).clone()).collect::<Vec<_>>();
            assert_eq!(
                frames(&fa),
                frames(&fb),
                "slots {} (n{}) and {} (n{}) read different broadcasts between Lamport times {lo} and {hi}",
                a.slot,
                a.node,
                b.slot,
                b.node
            );
            if a.grpc == b.grpc {
                let bytes = |v: &[(&Frame, &[u8])]| {
                    v.iter().map(|(_, raw)| raw.to_vec()).collect::<Vec<_>>()
                };
                assert!(
                    bytes(&fa) == bytes(&fb),
                    "slots {} (n{}) and {} (n{}) read the same broadcasts as different bytes",
                    a.slot,
                    a.node,
                    b.slot,
                    b.node
                );
            }
        }
    }
}
