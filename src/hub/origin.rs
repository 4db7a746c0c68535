//! What participants send, where it enters: each operation first decides what only its origin
//! can (it reads the hub's time once, checks the name and text rules, the token bucket and its
//! flood limit, and whether the node is shutting down), and yields an [`Accepted`] event, which
//! `hub::apply` then applies under the same lock. Nothing between the two halves waits, copies
//! or allocates. In a cluster the event is published instead (`hub::replica`) and applied when
//! the stream hands it back; a join waits for that, since its outcome (an id, or a name taken
//! on another node) is the stream's to decide.

use super::apply::{Accepted, Opening};
use super::limits::Verdict;
use super::outbox::{Ending, Outbox};
use super::replica::Replica;
use super::{Hub, JoinRequest, LeaveReason, SessionError, State, Transport, rules};
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long an origin waits for the stream to apply its event before it answers UNAVAILABLE:
/// the stream hop takes about a millisecond, so this is only ever reached with NATS gone.
pub(super) const STREAM_PATIENCE: Duration = Duration::from_secs(5);

/// Why a node that cannot reach the cluster's stream admits nothing.
pub(super) const NOT_SERVING: &str = "this node has lost its connection to the cluster (NATS); \
                                       reconnect, to another node if it persists";

/// A join's outcome: decided (a single node, or refused at its origin), or the stream's to
/// decide.
pub(crate) enum Joining {
    /// The id, or why not.
    Done(Result<u64, SessionError>),
    /// Resolves once the stream has applied the join (or gave up).
    Waiting(Pin<Box<dyn Future<Output = Result<u64, SessionError>> + Send>>),
}

/// Why a broadcast from a session outside the room is refused.
const NOT_IN_ROOM: &str = "you are not in the broadcast room (connect with ?username=NAME to \
                           join it); send direct messages with a recipient_id";

impl Hub {
    /// Admits a participant into the room and announces it to everyone, itself included.
    /// On a single node it is decided at once; in a cluster the stream decides, and the
    /// caller polls the returned future (not reading the participant's input meanwhile).
    pub(crate) fn join(self: &Arc<Self>, req: JoinRequest<'_>) -> Joining {
        if let Err(e) = rules::check_username(req.username) {
            return Joining::Done(Err(e.into()));
        }
        let key = rules::fold(req.username);
        let waiting = {
            let mut state = self.lock();
            if state.closing {
                return Joining::Done(Err(SessionError::ShuttingDown));
            }
            let opening = Opening {
                transport: req.transport,
                peer: req.peer,
                outbox: Some(req.outbox),
                connected_at: req.connected_at,
            };
            let event = Accepted::Join {
                opening,
                timestamp: req.timestamp,
                username: req.username,
                key,
                at: req.now,
            };
            let Some(replica) = self.replica() else {
                let joined = self.apply(&mut state, event);
                self.settle(&mut state);
                return Joining::Done(joined.opened());
            };
            if let Err(e) = self.admit(&state, replica) {
                return Joining::Done(Err(e));
            }
            self.publish(&mut state, replica, &event, true)
        };
        let hub = Arc::clone(self);
        Joining::Waiting(Box::pin(async move { hub.wait_opened(waiting).await }))
    }

    /// Whether a cluster node may admit a new session: connected to the stream, a member, and
    /// below its own participant limit.
    fn admit(&self, state: &State, replica: &Replica) -> Result<(), SessionError> {
        if let Some(why) = replica.refusal() {
            return Err(SessionError::Unavailable(why.into()));
        }
        let here = (state.by_transport[0] + state.by_transport[1]) as usize;
        if here >= self.config.max_participants {
            return Err(SessionError::Full(self.config.max_participants));
        }
        Ok(())
    }

    /// A new session's outcome, once the stream has applied its opening.
    async fn wait_opened(
        &self,
        waiting: Option<(u64, tokio::sync::oneshot::Receiver<super::apply::Applied>)>,
    ) -> Result<u64, SessionError> {
        let Some(waiting) = waiting else {
            return Err(SessionError::Unavailable(NOT_SERVING.into()));
        };
        match self.outcome(waiting, STREAM_PATIENCE).await {
            Ok(applied) => applied.opened(),
            Err(e) => Err(SessionError::Unavailable(format!("{e}; {NOT_SERVING}"))),
        }
    }

    /// Registers a direct-message-only session (a WebSocket user without a username): it gets
    /// its id from the one sequence and a welcome frame carrying it, but no broadcasts.
    pub(crate) async fn connect_direct(
        &self,
        transport: Transport,
        peer: &Arc<str>,
        outbox: &Outbox,
        connected_at: Instant,
    ) -> Result<u64, SessionError> {
        let waiting = {
            let mut state = self.lock();
            if state.closing {
                return Err(SessionError::ShuttingDown);
            }
            let opening = Opening {
                transport,
                peer,
                outbox: Some(outbox),
                connected_at,
            };
            let at = self.time.now();
            let event = Accepted::Connect { opening, at };
            let Some(replica) = self.replica() else {
                let opened = self.apply(&mut state, event);
                self.settle(&mut state);
                return opened.opened();
            };
            self.admit(&state, replica)?;
            self.publish(&mut state, replica, &event, true)
        };
        self.wait_opened(waiting).await
    }

    /// Input a transport could not even parse (malformed JSON, a binary frame): refused with a
    /// private error like any other bad input, so it is audited and takes its place in the order.
    pub(crate) fn refuse(&self, id: u64, timestamp: u64, why: &str, recipient: u64) {
        self.run(Accepted::Refuse {
            id,
            timestamp,
            recipient,
            why: Cow::Borrowed(why),
            chars: 0,
        });
    }

    /// A broadcast chat message from session `id`. Text that breaks the rules is refused with a
    /// private notice to the sender alone, and its session continues.
    pub(crate) fn message(&self, id: u64, timestamp: u64, text: &str) {
        let mut state = self.lock();
        if self.refused_unserved(&mut state, id) {
            return;
        }
        if let Some(event) = self.decide_message(&mut state, id, timestamp, text) {
            self.enter(&mut state, event);
        }
        self.settle(&mut state);
    }

    /// Applies `event` here, on a single node, or hands it to the stream, in a cluster.
    fn enter(&self, state: &mut State, event: Accepted<'_>) {
        match self.replica() {
            None => {
                self.apply(state, event);
            }
            Some(replica) => {
                self.publish(state, replica, &event, false);
            }
        }
    }

    /// A cluster node that cannot reach the stream, or whose queue to it is full, admits no
    /// input: the session is ended with UNAVAILABLE and the reason, so its client reconnects
    /// (to another node), and its leave is asked of the stream. True when that happened.
    fn refused_unserved(&self, state: &mut State, id: u64) -> bool {
        let Some(replica) = self.replica() else {
            return false;
        };
        let Some(why) = replica.refusal() else {
            return false;
        };
        let Some(&pos) = state.index.get(&id) else {
            return true;
        };
        let s = &mut state.sessions[pos];
        if let Some(outbox) = &s.outbox
            && !s.leaving
        {
            s.leaving = true;
            outbox.end(Ending::Error(SessionError::Unavailable(why.into())));
            let leave = Accepted::Leave {
                id,
                timestamp: 0,
                reason: LeaveReason::Disconnect,
            };
            self.publish(state, replica, &leave, false);
        }
        true
    }

    /// A direct message from session `id` to session `recipient`, whatever their transports.
    pub(crate) fn direct(&self, id: u64, timestamp: u64, recipient: u64, text: &str) {
        let mut state = self.lock();
        if self.refused_unserved(&mut state, id) {
            return;
        }
        if let Some(event) = self.decide_direct(&mut state, id, timestamp, recipient, text) {
            self.enter(&mut state, event);
        }
        self.settle(&mut state);
    }

    /// Who is online, for session `id` alone (kind ROSTER): sequenced like any event, so it
    /// lists exactly the joins and leaves it comes after. It counts against the session's rate
    /// limit, since it costs more than a message.
    pub(crate) fn roster(&self, id: u64, timestamp: u64) {
        let mut state = self.lock();
        if self.refused_unserved(&mut state, id) {
            return;
        }
        if let Some(event) = self.decide_roster(&mut state, id, timestamp) {
            self.enter(&mut state, event);
        }
        self.settle(&mut state);
    }

    /// Removes session `id`; its leave is announced to everyone left. Returns false if it was
    /// already gone, so each participant leaves exactly once however many paths try.
    /// In a cluster the leave is asked of the stream, and true means the session was here to
    /// ask for.
    pub(crate) fn leave(&self, id: u64, reason: LeaveReason, timestamp: u64) -> bool {
        let mut state = self.lock();
        let event = Accepted::Leave {
            id,
            timestamp,
            reason,
        };
        let left = match self.replica() {
            None => self.apply(&mut state, event).left(),
            Some(replica) => {
                let here = state.index.contains_key(&id);
                self.publish(&mut state, replica, &event, false);
                here
            }
        };
        self.settle(&mut state);
        left
    }

    /// An event that needs no deciding, applied under the lock (published, in a cluster).
    fn run(&self, event: Accepted<'_>) {
        let mut state = self.lock();
        self.enter(&mut state, event);
        self.settle(&mut state);
    }

    /// The origin's half of a broadcast: the sender's rate, its place in the room, the text rules.
    fn decide_message<'a>(
        &self,
        state: &mut State,
        id: u64,
        timestamp: u64,
        text: &'a str,
    ) -> Option<Accepted<'a>> {
        let &pos = state.index.get(&id)?;
        let at = self.time.now();
        if let Some(stop) = self.within_rate(state, pos, id, timestamp, 0, text, at) {
            return Some(stop);
        }
        let why = if !state.sessions[pos].in_room {
            Some(Cow::Borrowed(NOT_IN_ROOM))
        } else {
            rules::check_text(text)
                .err()
                .map(|e| Cow::Owned(e.to_string()))
        };
        Some(match why {
            Some(why) => Accepted::Refuse {
                id,
                timestamp,
                recipient: 0,
                why,
                chars: text.chars().count(),
            },
            None => Accepted::Message {
                id,
                timestamp,
                text,
                at,
            },
        })
    }

    /// The origin's half of a direct message: the sender's rate and the text rules. Whether the
    /// recipient is connected is for `apply` to say, at the message's place in the order.
    fn decide_direct<'a>(
        &self,
        state: &mut State,
        id: u64,
        timestamp: u64,
        recipient: u64,
        text: &'a str,
    ) -> Option<Accepted<'a>> {
        let &pos = state.index.get(&id)?;
        let at = self.time.now();
        if let Some(stop) = self.within_rate(state, pos, id, timestamp, recipient, text, at) {
            return Some(stop);
        }
        Some(match rules::check_text(text) {
            Err(e) => Accepted::Refuse {
                id,
                timestamp,
                recipient,
                why: Cow::Owned(e.to_string()),
                chars: text.chars().count(),
            },
            Ok(()) => Accepted::Direct {
                id,
                timestamp,
                recipient,
                text,
                at,
            },
        })
    }

    /// The origin's half of a roster request: the sender's rate.
    fn decide_roster(&self, state: &mut State, id: u64, timestamp: u64) -> Option<Accepted<'_>> {
        let &pos = state.index.get(&id)?;
        let at = self.time.now();
        Some(
            self.within_rate(state, pos, id, timestamp, 0, "", at)
                .unwrap_or(Accepted::Roster { id, timestamp }),
        )
    }

    /// Applies the session's token bucket at hub time `at`. `None` when the input may go on;
    /// otherwise the event that takes its place: a refusal with the rate-limit notice, or the
    /// session's leave for flooding (its outbox already ended with the error).
    #[allow(clippy::too_many_arguments)]
    fn within_rate<'a>(
        &self,
        state: &mut State,
        pos: usize,
        id: u64,
        timestamp: u64,
        recipient: u64,
        text: &'a str,
        at: Instant,
    ) -> Option<Accepted<'a>> {
        let limit = self.config.rate?;
        match state.sessions[pos].bucket.take(Some(limit), at) {
            Verdict::Pass => None,
            Verdict::Refuse => {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                let why = format!(
                    "rate limit: at most {} messages per second (bursts of {}); message dropped",
                    limit.per_second, limit.burst
                );
                Some(Accepted::Refuse {
                    id,
                    timestamp,
                    recipient,
                    why: Cow::Owned(why),
                    chars: text.chars().count(),
                })
            }
            Verdict::Flood(n) => {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                self.stats.flood_disconnects.fetch_add(1, Ordering::Relaxed);
                let err = SessionError::Flooding(n);
                let reason = LeaveReason::Violation(err.reason());
                if let Some(outbox) = &state.sessions[pos].outbox {
                    outbox.end(Ending::Error(err));
                }
                Some(Accepted::Leave {
                    id,
                    timestamp,
                    reason,
                })
            }
        }
    }
}
