//! The origin's side in a cluster: an accepted event encoded and handed to the publisher's
//! queue, what the origin waits for, and the sessions this node cuts off itself (slow
//! consumers, the grace without NATS), whose leaves it asks of the stream.

use super::*;

impl Hub {
    /// The origin's half when the stream applies: hands `event` to the publisher, with a token
    /// when the caller waits for the outcome (and a new session's opening, kept here since
    /// only this node has its outbox). Called under the lock, so a session's events are queued
    /// in the order it sent them.
    pub(in crate::hub) fn publish(
        &self,
        state: &mut State,
        replica: &Replica,
        event: &Accepted<'_>,
        wait: bool,
    ) -> Option<(u64, oneshot::Receiver<Applied>)> {
        let token = if wait { replica.token() } else { 0 };
        let (ev, opening) = match event {
            Accepted::Join {
                opening,
                timestamp,
                username,
                ..
            } => (
                Ev::Join(pb::Join {
                    timestamp: *timestamp,
                    username: (*username).to_owned(),
                    wire: wire_of(opening.transport),
                    peer: opening.peer.to_string(),
                }),
                Some(*opening),
            ),
            Accepted::Connect { opening, .. } => (
                Ev::Connect(pb::Connect {
                    wire: wire_of(opening.transport),
                    peer: opening.peer.to_string(),
                }),
                Some(*opening),
            ),
            Accepted::Message {
                id,
                timestamp,
                text,
                ..
            } => (
                Ev::Message(pb::Message {
                    id: *id,
                    timestamp: *timestamp,
                    text: (*text).to_owned(),
                }),
                None,
            ),
            Accepted::Direct {
                id,
                timestamp,
                recipient,
                text,
                ..
            } => (
                Ev::Direct(pb::Direct {
                    id: *id,
                    timestamp: *timestamp,
                    recipient: *recipient,
                    text: (*text).to_owned(),
                }),
                None,
            ),
            Accepted::Roster { id, timestamp } => (
                Ev::Roster(pb::Roster {
                    id: *id,
                    timestamp: *timestamp,
                }),
                None,
            ),
            Accepted::Refuse {
                id,
                timestamp,
                recipient,
                why,
                chars,
            } => (
                Ev::Refuse(pb::Refuse {
                    id: *id,
                    timestamp: *timestamp,
                    recipient: *recipient,
                    why: why.to_string(),
                    chars: *chars as u64,
                }),
                None,
            ),
            Accepted::Leave {
                id,
                timestamp,
                reason,
            } => {
                let (code, detail) = reason_parts(reason);
                (
                    Ev::Leave(pb::Leave {
                        id: *id,
                        timestamp: *timestamp,
                        reason: code.to_owned(),
                        detail,
                    }),
                    None,
                )
            }
            Accepted::Kick {
                target,
                reason,
                ban,
                actor,
                ..
            } => {
                let (name, id) = match target {
                    Target::Name(name) => ((*name).to_owned(), 0),
                    Target::Id(id) => (String::new(), *id),
                };
                (
                    Ev::Kick(pb::Kick {
                        name,
                        id,
                        reason: (*reason).to_owned(),
                        ban_seconds: ban.map_or(0, |b| b.as_secs().max(1)),
                        actor: (*actor).to_owned(),
                    }),
                    None,
                )
            }
            Accepted::Unban { name, actor, .. } => (
                Ev::Unban(pb::Unban {
                    name: (*name).to_owned(),
                    actor: (*actor).to_owned(),
                }),
                None,
            ),
            Accepted::Announce { text, actor } => (
                Ev::Announce(pb::Announce {
                    text: (*text).to_owned(),
                    actor: (*actor).to_owned(),
                }),
                None,
            ),
        };
        let waiting = wait.then(|| {
            let (tx, rx) = oneshot::channel();
            let opening = opening.and_then(|o| {
                o.outbox.map(|outbox| OwnedOpening {
                    transport: o.transport,
                    peer: Arc::clone(o.peer),
                    outbox: outbox.clone(),
                    connected_at: o.connected_at,
                })
            });
            state.cluster.pending.insert(
                token,
                Pending {
                    incarnation: replica.incarnation(),
                    opening,
                    reply: Some(tx),
                },
            );
            (token, rx)
        });
        replica.publish(token, ev);
        waiting
    }

    /// Waits for the outcome of the event published with `token`; gives up after `patience`
    /// (the stream is unreachable), forgetting the token so that a late application of the
    /// event finds no one waiting.
    pub(in crate::hub) async fn outcome(
        &self,
        (token, rx): (u64, oneshot::Receiver<Applied>),
        patience: Duration,
    ) -> Result<Applied, ReplicaError> {
        match tokio::time::timeout(patience, rx).await {
            Ok(Ok(applied)) => Ok(applied),
            _ => {
                self.lock().cluster.pending.remove(&token);
                Err(ReplicaError::Timeout(patience))
            }
        }
    }

    /// The cluster's form of `settle`: every local session that overflowed is cut off now (its
    /// outbox ends, so its writer reads nothing more) and its leave is asked of the stream, once.
    pub(in crate::hub) fn settle_replicated(&self, state: &mut State) {
        let Some(replica) = self.replica() else {
            return;
        };
        while let Some(id) = state.overflowed.pop() {
            let Some(&pos) = state.index.get(&id) else {
                continue;
            };
            let s = &mut state.sessions[pos];
            let Some(outbox) = &s.outbox else { continue };
            if s.leaving {
                continue;
            }
            s.leaving = true;
            self.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
            outbox.end(Ending::Error(SessionError::SlowConsumer(
                self.config.backlog,
            )));
            let (reason, detail) = reason_parts(&LeaveReason::SlowConsumer);
            replica.publish(
                0,
                Ev::Leave(pb::Leave {
                    id,
                    timestamp: 0,
                    reason: reason.to_owned(),
                    detail,
                }),
            );
        }
    }

    /// Ends every session of this node that is still open, with `err`, and asks the stream for
    /// their leaves: the node cannot serve them (NATS lost beyond the grace, or shutdown).
    pub fn end_local_sessions(&self, err: &SessionError) -> usize {
        let Some(replica) = self.replica() else {
            return 0;
        };
        let mut state = self.lock();
        let mut ended = 0;
        for s in state.sessions.iter_mut() {
            let Some(outbox) = &s.outbox else { continue };
            if s.leaving {
                continue;
            }
            s.leaving = true;
            outbox.end(Ending::Error(err.clone()));
            ended += 1;
            replica.publish(
                0,
                Ev::Leave(pb::Leave {
                    id: s.id,
                    timestamp: 0,
                    reason: "disconnect".to_owned(),
                    detail: String::new(),
                }),
            );
        }
        ended
    }
}
