//! One participant's session as a state machine: connected, joined, ended. Transports decode
//! their wire into [`Event`]s and feed them to [`SessionHandle::handle`]; every decision (what is
//! allowed when, what is a violation, who may speak as whom) is made here or in the hub. How a
//! session ends always arrives through its outbox, so a transport has one place to turn an
//! ending into its wire form. A session that has not joined by the join deadline (hub time,
//! measured from its start) is ended by its next event; the transport's timer ends one that
//! stays silent.

use super::outbox::{Ending, Outbox};
use super::{Hub, JoinRequest, LeaveReason, SessionError, Transport};
use crate::clock::MAX_PEER_TIMESTAMP;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// What a participant sent, independent of the wire it came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// Join the room under a username.
    Join {
        /// The name to join with.
        username: &'a str,
    },
    /// A chat message: broadcast, or direct when `recipient` is non-zero.
    Message {
        /// The name the sender claims (empty means "me").
        username: &'a str,
        /// The text.
        text: &'a str,
        /// A user id for a direct message, 0 for a broadcast.
        recipient: u64,
    },
    /// Leave the room.
    Leave {
        /// The name the sender claims (empty means "me").
        username: &'a str,
    },
    /// Ask who is online (answered with a ROSTER to this session alone).
    Roster,
    /// An event with nothing in it.
    Empty,
    /// Input the transport could not turn into an event (malformed JSON, a wrong type, a binary
    /// frame); refused privately, the session continues.
    Invalid {
        /// What was wrong, for the participant.
        reason: &'a str,
        /// The recipient the input named, if it could tell.
        recipient: u64,
    },
}

/// Whether the transport should keep reading from the participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// The session is over; drain the outbox to learn how it ended.
    Ended,
}

/// A transport's handle on one session. Dropping it counts as a disconnect, so a participant
/// whose connection breaks leaves exactly once, whatever the transport noticed.
pub struct SessionHandle {
    hub: Arc<Hub>,
    outbox: Outbox,
    transport: Transport,
    peer: Arc<str>,
    /// When it started, in hub time: the join deadline counts from here.
    connected_at: Instant,
    joined: Option<(u64, String)>,
    ended: bool,
}

impl SessionHandle {
    /// A new, not yet joined session whose deliveries go to `outbox`.
    pub fn new(hub: Arc<Hub>, transport: Transport, peer: String, outbox: Outbox) -> Self {
        hub.stats.connections.fetch_add(1, Ordering::Relaxed);
        let connected_at = hub.time.now();
        SessionHandle {
            hub,
            outbox,
            transport,
            peer: peer.into(),
            connected_at,
            joined: None,
            ended: false,
        }
    }

    /// Registers a direct-message-only session at once (it has an id before any event).
    pub fn connect_direct(&mut self) -> Result<u64, SessionError> {
        let id =
            self.hub
                .connect_direct(self.transport, &self.peer, &self.outbox, self.connected_at);
        match id {
            Ok(id) => {
                self.joined = Some((id, String::new()));
                Ok(id)
            }
            Err(e) => {
                self.ended = true;
                self.hub
                    .record_violation(None, "", &self.peer, self.transport, 0, &e);
                self.outbox.end(Ending::Error(e.clone()));
                Err(e)
            }
        }
    }

    /// The hub this session belongs to.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The session's user id, once joined.
    pub fn id(&self) -> Option<u64> {
        self.joined.as_ref().map(|(id, _)| *id)
    }

    /// Whether the session is over.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Handles one event carrying the sender's Lamport `timestamp`.
    pub fn handle(&mut self, timestamp: u64, event: Event<'_>) -> Flow {
        if self.ended {
            return Flow::Ended;
        }
        if timestamp > MAX_PEER_TIMESTAMP {
            return self.fail(timestamp, SessionError::TimestampOutOfRange(timestamp));
        }
        // Before the join every event reads the hub time, once: past the deadline it is a join
        // timeout, whatever the event. After the join only the hub's operations read the time.
        let now = if self.joined.is_none() {
            let now = self.hub.time.now();
            let deadline = self.hub.config.join_deadline;
            if now.saturating_duration_since(self.connected_at) >= deadline {
                return self.fail(timestamp, SessionError::JoinTimeout(deadline));
            }
            now
        } else {
            self.connected_at // not read once joined
        };
        match (event, &self.joined) {
            (Event::Empty, _) => self.fail(timestamp, SessionError::EmptyEvent),
            (Event::Invalid { reason, recipient }, Some((id, _))) => {
                self.hub.refuse(*id, timestamp, reason, recipient);
                Flow::Continue
            }
            (Event::Invalid { .. }, None) => Flow::Continue,
            (Event::Join { username }, None) => {
                let joined = self.hub.join(JoinRequest {
                    username,
                    timestamp,
                    transport: self.transport,
                    peer: &self.peer,
                    outbox: &self.outbox,
                    connected_at: self.connected_at,
                    now,
                });
                match joined {
                    Ok(id) => {
                        self.joined = Some((id, username.to_owned()));
                        Flow::Continue
                    }
                    Err(e) => {
                        let name = username.chars().take(64).collect::<String>();
                        self.fail_named(timestamp, &name, e)
                    }
                }
            }
            (Event::Join { .. }, Some((_, own))) => {
                let e = SessionError::AlreadyJoined(own.clone());
                self.fail(timestamp, e)
            }
            (Event::Message { .. }, None) => {
                self.fail(timestamp, SessionError::NotJoined("message"))
            }
            (Event::Leave { .. }, None) => self.fail(timestamp, SessionError::NotJoined("leave")),
            (Event::Message { username, .. } | Event::Leave { username }, Some((_, own)))
                if !username.is_empty() && username != own =>
            {
                let e = SessionError::Impersonation {
                    own: own.clone(),
                    claimed: username.chars().take(64).collect(),
                };
                self.fail(timestamp, e)
            }
            (
                Event::Message {
                    text, recipient, ..
                },
                Some((id, _)),
            ) => {
                if recipient == 0 {
                    self.hub.message(*id, timestamp, text);
                } else {
                    self.hub.direct(*id, timestamp, recipient, text);
                }
                Flow::Continue
            }
            (Event::Roster, None) => {
                self.fail(timestamp, SessionError::NotJoined("roster request"))
            }
            (Event::Roster, Some((id, _))) => {
                self.hub.roster(*id, timestamp);
                Flow::Continue
            }
            (Event::Leave { .. }, Some((id, _))) => {
                self.hub.leave(*id, LeaveReason::Leave, timestamp);
                self.ended = true;
                Flow::Ended
            }
        }
    }

    /// The participant's input ended (or broke) without a leave.
    pub fn disconnect(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        match &self.joined {
            Some((id, _)) => {
                self.hub.leave(*id, LeaveReason::Disconnect, 0);
            }
            None => self.outbox.end(Ending::Clean),
        }
    }

    /// Ends the session for abuse the transport detected itself (an oversized or unreadable
    /// frame): audited, announced, and the reason goes out through the outbox.
    pub fn violation(&mut self, err: SessionError) {
        if !self.ended {
            self.fail(0, err);
        }
    }

    fn fail(&mut self, timestamp: u64, err: SessionError) -> Flow {
        let name = self
            .joined
            .as_ref()
            .map(|(_, n)| n.clone())
            .unwrap_or_default();
        self.fail_named(timestamp, &name, err)
    }

    /// Ends the session for a violation: the error goes to the participant through its outbox,
    /// the trail records it, and a joined participant's leave is announced.
    fn fail_named(&mut self, timestamp: u64, name: &str, err: SessionError) -> Flow {
        self.ended = true;
        let id = self.id();
        self.hub
            .record_violation(id, name, &self.peer, self.transport, timestamp, &err);
        let code = err.reason();
        self.outbox.end(Ending::Error(err));
        if let Some(id) = id {
            self.hub.leave(id, LeaveReason::Violation(code), 0);
        }
        Flow::Ended
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        self.disconnect();
    }
}
