//! What participants send, where it enters: each operation first decides what only its origin
//! can (it reads the hub's time once, checks the name and text rules, the token bucket and its
//! flood limit, and whether the node is shutting down), and yields an [`Accepted`] event, which
//! `hub::apply` then applies under the same lock. Nothing between the two halves waits, copies
//! or allocates; see `hub::apply` for how the cluster will put its stream between them.

use super::apply::{Accepted, Opening};
use super::limits::Verdict;
use super::outbox::{Ending, Outbox};
use super::{Hub, JoinRequest, LeaveReason, SessionError, State, Transport, rules};
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Why a broadcast from a session outside the room is refused.
const NOT_IN_ROOM: &str = "you are not in the broadcast room (connect with ?username=NAME to \
                           join it); send direct messages with a recipient_id";

impl Hub {
    /// Admits a participant into the room and announces it to everyone, itself included.
    pub(crate) fn join(&self, req: JoinRequest<'_>) -> Result<u64, SessionError> {
        rules::check_username(req.username)?;
        let key = rules::fold(req.username);
        let mut state = self.lock();
        if state.closing {
            return Err(SessionError::ShuttingDown);
        }
        let opening = Opening {
            transport: req.transport,
            peer: req.peer,
            outbox: req.outbox,
            connected_at: req.connected_at,
        };
        let event = Accepted::Join {
            opening,
            timestamp: req.timestamp,
            username: req.username,
            key,
            at: req.now,
        };
        let joined = self.apply(&mut state, event);
        self.settle(&mut state);
        joined.opened()
    }

    /// Registers a direct-message-only session (a WebSocket user without a username): it gets
    /// its id from the one sequence and a welcome frame carrying it, but no broadcasts.
    pub(crate) fn connect_direct(
        &self,
        transport: Transport,
        peer: &Arc<str>,
        outbox: &Outbox,
        connected_at: Instant,
    ) -> Result<u64, SessionError> {
        let mut state = self.lock();
        if state.closing {
            return Err(SessionError::ShuttingDown);
        }
        let opening = Opening {
            transport,
            peer,
            outbox,
            connected_at,
        };
        let at = self.time.now();
        let opened = self.apply(&mut state, Accepted::Connect { opening, at });
        self.settle(&mut state);
        opened.opened()
    }

    /// Input a transport could not even parse (malformed JSON, a binary frame): refused with a
    /// private error like any other bad input, so it is audited and takes its place in the order.
    pub(crate) fn refuse(&self, id: u64, timestamp: u64, why: &str, recipient: u64) {
        self.run(Accepted::Refuse {
            id,
            timestamp,
            recipient,
            why: Cow::Borrowed(why),
            text: "",
        });
    }

    /// A broadcast chat message from session `id`. Text that breaks the rules is refused with a
    /// private notice to the sender alone, and its session continues.
    pub(crate) fn message(&self, id: u64, timestamp: u64, text: &str) {
        let mut state = self.lock();
        if let Some(event) = self.decide_message(&mut state, id, timestamp, text) {
            self.apply(&mut state, event);
        }
        self.settle(&mut state);
    }

    /// A direct message from session `id` to session `recipient`, whatever their transports.
    pub(crate) fn direct(&self, id: u64, timestamp: u64, recipient: u64, text: &str) {
        let mut state = self.lock();
        if let Some(event) = self.decide_direct(&mut state, id, timestamp, recipient, text) {
            self.apply(&mut state, event);
        }
        self.settle(&mut state);
    }

    /// Who is online, for session `id` alone (kind ROSTER): sequenced like any event, so it
    /// lists exactly the joins and leaves it comes after. It counts against the session's rate
    /// limit, since it costs more than a message.
    pub(crate) fn roster(&self, id: u64, timestamp: u64) {
        let mut state = self.lock();
        if let Some(event) = self.decide_roster(&mut state, id, timestamp) {
            self.apply(&mut state, event);
        }
        self.settle(&mut state);
    }

    /// Removes session `id`; its leave is announced to everyone left. Returns false if it was
    /// already gone, so each participant leaves exactly once however many paths try.
    pub(crate) fn leave(&self, id: u64, reason: LeaveReason, timestamp: u64) -> bool {
        let mut state = self.lock();
        let event = Accepted::Leave {
            id,
            timestamp,
            reason,
        };
        let left = self.apply(&mut state, event);
        self.settle(&mut state);
        left.left()
    }

    /// An event that needs no deciding, applied under the lock.
    fn run(&self, event: Accepted<'_>) {
        let mut state = self.lock();
        self.apply(&mut state, event);
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
                text,
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
                text,
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
                    text,
                })
            }
            Verdict::Flood(n) => {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                self.stats.flood_disconnects.fetch_add(1, Ordering::Relaxed);
                let err = SessionError::Flooding(n);
                let reason = LeaveReason::Violation(err.reason());
                state.sessions[pos].outbox.end(Ending::Error(err));
                Some(Accepted::Leave {
                    id,
                    timestamp,
                    reason,
                })
            }
        }
    }
}
