//! Every node's side: the stream applied in stream order, in batches under one hold of the
//! hub lock, each origin's events once and in their numbered order, and the nodes' own events
//! (up, heartbeat, lost).

use super::*;

/// A gap in the stream's time longer than this (heartbeats come at least every second from every
/// live node) means the stream itself was away: see `apply_locked`.
const STREAM_GAP_MS: u64 = 2_000;

impl Hub {
    /// Applies one message of the stream, in stream order: what every node runs for every
    /// event. A message that is not an event is skipped (by every node alike) and reported.
    pub fn apply_stream(&self, msg: StreamEvent<'_>) -> Result<(), ReplicaError> {
        match self.apply_stream_batch(std::slice::from_ref(&msg)).pop() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Applies consecutive messages of the stream, in order, under one hold of the hub lock:
    /// what the node's consumer has ready at once is applied together, and the writers parked
    /// on the room log are woken once for all of it (when the lock is released), not once per
    /// message. Returns what could not be applied (each skipped by every node alike).
    pub fn apply_stream_batch(&self, msgs: &[StreamEvent<'_>]) -> Vec<ReplicaError> {
        let Some(replica) = self.replica() else {
            return vec![ReplicaError::NotReplicated];
        };
        let at = self.shown();
        let mut state = self.lock();
        msgs.iter()
            .filter_map(|msg| self.apply_locked(&mut state, replica, at, *msg).err())
            .collect()
    }

    /// One message of the stream, under the lock: its events, in their order.
    fn apply_locked(
        &self,
        state: &mut State,
        replica: &Replica,
        at: Shown,
        msg: StreamEvent<'_>,
    ) -> Result<(), ReplicaError> {
        let batch = pb::ClusterBatch::decode(msg.payload);
        if msg.seq <= state.cluster.applied {
            // Delivered again (a consumer recreated after a reconnect, a snapshot's overlap).
            return Ok(());
        }
        state.cluster.applied = msg.seq;
        // Every live node publishes a heartbeat at least every second, so a longer gap in the
        // stream's time means nobody could publish (NATS was away from everyone): nobody can be
        // blamed for the silence, and every node counts as heard at the gap's end. Without
        // this, the first node back would declare all the others lost. The same on every node.
        if state.cluster.stream_ms != 0
            && msg.stream_ms.saturating_sub(state.cluster.stream_ms) > STREAM_GAP_MS
        {
            for node in state.cluster.nodes.values_mut() {
                node.heard_ms = node.heard_ms.max(msg.stream_ms);
            }
        }
        state.cluster.stream_ms = state.cluster.stream_ms.max(msg.stream_ms);
        let batch = batch.map_err(|e| ReplicaError::Undecodable {
            seq: msg.seq,
            reason: e.to_string(),
        })?;
        let mut sequenced = false;
        for event in batch.events {
            self.apply_stream_event(state, replica, at, msg, event, &mut sequenced);
        }
        Ok(())
    }

    /// One event of a stream message. `sequenced` says whether an earlier event of the message
    /// took its identity from the stream sequence: a second one could not have its own (two
    /// sessions with one id), so every node refuses it alike, and its origin hears why.
    fn apply_stream_event(
        &self,
        state: &mut State,
        replica: &Replica,
        at: Shown,
        msg: StreamEvent<'_>,
        mut event: pb::ClusterEvent,
        sequenced: &mut bool,
    ) {
        if !state.cluster.in_order(&event) {
            tracing::debug!(
                "cluster: skipping stream message {}: event {} of {:?} out of its order",
                msg.seq,
                event.counter,
                event.node
            );
            return;
        }
        let Some(ev) = event.event.take() else {
            return;
        };
        let mine = replica.incarnation();
        let local = mine != 0 && event.incarnation == mine;
        state.cluster.applying = Applying {
            seq: msg.seq,
            local,
            origin: event.incarnation,
        };
        if let Some(node) = state.cluster.nodes.get_mut(&event.node)
            && node.incarnation == event.incarnation
        {
            node.heard_ms = msg.stream_ms;
        }
        let wall = from_ms(event.wall_ms);
        let decided = Shown {
            now: self.instant_of(wall, at),
            wall,
        };
        // Matched by the incarnation it was published under, not this node's current one: an
        // event published just before this node was declared lost (or while it was not a
        // member) is still this node's to answer, else its origin waits out STREAM_PATIENCE and
        // reports a timeout for an event every node applied.
        let pending = if event.node == replica.node
            && event.token != 0
            && state
                .cluster
                .pending
                .get(&event.token)
                .is_some_and(|p| p.incarnation == event.incarnation)
        {
            state.cluster.pending.remove(&event.token)
        } else {
            None
        };
        if takes_sequence(&ev) && std::mem::replace(sequenced, true) {
            tracing::warn!(
                "cluster: stream message {} has a second event that takes its identity from the \
                 sequence (from {:?}); refused",
                msg.seq,
                event.node
            );
            if !matches!(ev, Ev::NodeUp(_))
                && let Some(reply) = pending.and_then(|p| p.reply)
            {
                let _ = reply.send(Applied::Opened(Err(SessionError::Unavailable(
                    "the cluster's stream refused the event; reconnect".to_owned(),
                ))));
            }
        } else {
            self.apply_one(state, replica, &event, ev, msg, decided, pending);
        }
        state.cluster.applying = Applying::default();
        self.settle(state);
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_one(
        &self,
        state: &mut State,
        replica: &Replica,
        event: &pb::ClusterEvent,
        ev: Ev,
        msg: StreamEvent<'_>,
        decided: Shown,
        mut pending: Option<Pending>,
    ) {
        let at = decided.now;
        let reply = pending.as_mut().and_then(|p| p.reply.take());
        let opening = pending.and_then(|p| p.opening);
        // A session of this node whose origin gave up waiting (the stream was slow to answer):
        // it is gone here, so it leaves as soon as it has joined, on every node alike.
        let orphan = state.cluster.applying.local
            && matches!(ev, Ev::Join(_) | Ev::Connect(_))
            && reply.as_ref().is_none_or(oneshot::Sender::is_closed);
        let peer: Arc<str> = match (&opening, &ev) {
            (Some(o), _) => Arc::clone(&o.peer),
            (None, Ev::Join(j)) => j.peer.as_str().into(),
            (None, Ev::Connect(c)) => c.peer.as_str().into(),
            _ => Arc::from(""),
        };
        // A new session as this node sees it: with its outbox on its own node, without on the
        // others (`wire` is the form the event names, used where there is no outbox).
        let opened = |wire: i32| Opening {
            transport: opening.as_ref().map_or(transport_of(wire), |o| o.transport),
            peer: &peer,
            outbox: opening.as_ref().map(|o| &o.outbox),
            connected_at: opening.as_ref().map_or(at, |o| o.connected_at),
        };
        // A session opened by an incarnation the cluster no longer has (declared lost after its
        // origin published) would belong to no node, and nothing would ever remove it: it
        // would hold its name forever. Every node refuses it alike, and its origin hears why.
        let member = state
            .cluster
            .nodes
            .get(&event.node)
            .is_some_and(|n| n.incarnation == event.incarnation);
        let outcome = match &ev {
            Ev::Join(_) | Ev::Connect(_) if !member => {
                Some(Applied::Opened(Err(SessionError::Unavailable(format!(
                    "node {} (incarnation {}) was taken out of the cluster before the stream \
                     had this session; reconnect",
                    event.node, event.incarnation
                )))))
            }
            Ev::Join(j) => {
                let opening = opened(j.wire);
                // Its origin checked the name; a name that breaks the rules can only come from
                // something else writing to the stream, and every node refuses it alike.
                Some(match rules::check_username(&j.username) {
                    Err(e) => Applied::Opened(Err(e.into())),
                    Ok(()) => self.apply(
                        state,
                        Accepted::Join {
                            opening,
                            timestamp: j.timestamp,
                            username: &j.username,
                            key: rules::fold(&j.username),
                            at,
                        },
                    ),
                })
            }
            Ev::Connect(c) => Some(self.apply(
                state,
                Accepted::Connect {
                    opening: opened(c.wire),
                    at,
                },
            )),
            Ev::Message(m) => Some(self.apply(
                state,
                Accepted::Message {
                    id: m.id,
                    timestamp: m.timestamp,
                    text: &m.text,
                    at,
                },
            )),
            Ev::Direct(d) => Some(self.apply(
                state,
                Accepted::Direct {
                    id: d.id,
                    timestamp: d.timestamp,
                    recipient: d.recipient,
                    text: &d.text,
                    at,
                },
            )),
            Ev::Roster(r) => Some(self.apply(
                state,
                Accepted::Roster {
                    id: r.id,
                    timestamp: r.timestamp,
                },
            )),
            Ev::Refuse(r) => Some(self.apply(
                state,
                Accepted::Refuse {
                    id: r.id,
                    timestamp: r.timestamp,
                    recipient: r.recipient,
                    why: Cow::Borrowed(&r.why),
                    chars: usize::try_from(r.chars).unwrap_or(usize::MAX),
                },
            )),
            Ev::Leave(l) => Some(self.apply(
                state,
                Accepted::Leave {
                    id: l.id,
                    timestamp: l.timestamp,
                    reason: reason_of(&l.reason, &l.detail),
                },
            )),
            Ev::Kick(k) => {
                let target = if k.name.is_empty() {
                    Target::Id(k.id)
                } else {
                    Target::Name(&k.name)
                };
                Some(self.apply(
                    state,
                    Accepted::Kick {
                        target,
                        reason: &k.reason,
                        ban: (k.ban_seconds > 0).then(|| Duration::from_secs(k.ban_seconds)),
                        actor: &k.actor,
                        at: decided,
                    },
                ))
            }
            Ev::Unban(u) => Some(self.apply(
                state,
                Accepted::Unban {
                    name: &u.name,
                    actor: &u.actor,
                    at: decided,
                },
            )),
            Ev::Announce(a) => Some(self.apply(
                state,
                Accepted::Announce {
                    text: &a.text,
                    actor: &a.actor,
                },
            )),
            Ev::NodeUp(up) => {
                self.apply_node_up(state, replica, event, up, msg);
                None
            }
            Ev::Heartbeat(_) => None,
            Ev::NodeLost(lost) => {
                self.audit_node_lost(state, lost);
                self.remove_node(state, &lost.node, lost.incarnation, replica);
                None
            }
        };
        if orphan && let Some(Applied::Opened(Ok(id))) = &outcome {
            replica.publish(
                0,
                Ev::Leave(pb::Leave {
                    id: *id,
                    timestamp: 0,
                    reason: "disconnect".to_owned(),
                    detail: String::new(),
                }),
            );
        }
        if let (Some(reply), Some(outcome)) = (reply, outcome) {
            let _ = reply.send(outcome);
        }
    }

    /// A node comes up: it becomes a member at this sequence, and an earlier incarnation of the
    /// same name is gone with its participants.
    fn apply_node_up(
        &self,
        state: &mut State,
        replica: &Replica,
        event: &pb::ClusterEvent,
        up: &pb::NodeUp,
        msg: StreamEvent<'_>,
    ) {
        if let Some(old) = state.cluster.nodes.get(&event.node).map(|n| n.incarnation) {
            self.remove_node(state, &event.node, old, replica);
        }
        state.cluster.nodes.insert(
            event.node.clone(),
            NodeInfo {
                name: event.node.clone(),
                incarnation: msg.seq,
                address: up.address.clone(),
                heard_ms: msg.stream_ms,
                participants: 0,
            },
        );
        if event.node == replica.node && event.token == replica.boot {
            replica.incarnation.send_replace(msg.seq);
            self.audit_node_up(state, &up.address);
        }
    }

    /// Removes a node's incarnation and its participants, each with its own leave, in id
    /// order; nothing when it is already gone, so a node is lost once whoever declares it.
    fn remove_node(&self, state: &mut State, name: &str, incarnation: u64, replica: &Replica) {
        if state
            .cluster
            .nodes
            .get(name)
            .is_some_and(|n| n.incarnation == incarnation)
        {
            state.cluster.nodes.remove(name);
        }
        let mut gone: Vec<u64> = state
            .sessions
            .iter()
            .filter(|s| s.origin == incarnation)
            .map(|s| s.id)
            .collect();
        gone.sort_unstable();
        for id in gone {
            if let Some(&pos) = state.index.get(&id) {
                let lamport = self.clock.tick();
                self.remove(state, pos, lamport, &LeaveReason::NodeLost);
            }
        }
        if name == replica.node && incarnation == replica.incarnation() {
            tracing::warn!(
                "cluster: this node (incarnation {incarnation}) was declared lost; coming up \
                 again as a new node"
            );
            replica.incarnation.send_replace(0);
        }
    }
}
