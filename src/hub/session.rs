//! One participant's session as a state machine: connected, joined, ended. Transports decode
//! their wire into [`Event`]s and feed them to [`SessionHandle::handle`]; every decision (what is
//! allowed when, what is a violation, who may speak as whom) is made here or in the hub. How a
//! session ends always arrives through its outbox, so a transport has one place to turn an
//! ending into its wire form. A session that has not joined by the join deadline (hub time,
//! measured from its start) is ended by its next event; the transport's timer ends one that
//! stays silent.

use super::origin::Joining;
use super::outbox::{Ending, Outbox};
use super::{Hub, JoinRequest, LeaveReason, SessionError, Transport, rules};
use crate::clock::MAX_PEER_TIMESTAMP;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
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
    /// A join the cluster's stream is deciding, with its timestamp and name.
    joining: Option<(JoinFuture, u64, String)>,
    ended: bool,
}

type JoinFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, SessionError>> + Send>>;

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
            joining: None,
            ended: false,
        }
    }

    /// Registers a direct-message-only session at once (it has an id before any event).
    pub async fn connect_direct(&mut self) -> Result<u64, SessionError> {
        let id = self
            .hub
            .connect_direct(self.transport, &self.peer, &self.outbox, self.connected_at)
            .await;
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

    /// A join's outcome: the session is in, or it ends with why not.
    fn joined(&mut self, timestamp: u64, name: String, joined: Result<u64, SessionError>) -> Flow {
        match joined {
            Ok(id) => {
                self.joined = Some((id, name));
                Flow::Continue
            }
            Err(e) => self.fail_named(timestamp, &name, e),
        }
    }

    /// Polls a join the cluster's stream is deciding: `Pending` until it is decided, and the
    /// transport reads nothing more from the participant meanwhile, so its next event comes
    /// after its join in the order. `Ready` at once when no join is waiting.
    pub fn poll_joined(&mut self, cx: &mut Context<'_>) -> Poll<Flow> {
        let Some((waiting, _, _)) = &mut self.joining else {
            return Poll::Ready(if self.ended {
                Flow::Ended
            } else {
                Flow::Continue
            });
        };
        let joined = std::task::ready!(waiting.as_mut().poll(cx));
        let Some((_, timestamp, name)) = self.joining.take() else {
            return Poll::Ready(Flow::Continue);
        };
        Poll::Ready(self.joined(timestamp, name, joined))
    }

    /// Waits for a join the cluster's stream is deciding (see `poll_joined`).
    pub async fn settled(&mut self) -> Flow {
        std::future::poll_fn(|cx| self.poll_joined(cx)).await
    }

    /// Handles one event carrying the sender's Lamport `timestamp`. In a cluster a join is
    /// decided by the stream: poll `poll_joined` before handing over the next event.
    pub fn handle(&mut self, timestamp: u64, event: Event<'_>) -> Flow {
        if self.ended {
            return Flow::Ended;
        }
        if self.joining.is_some() {
            // The transport hands over nothing while a join is waiting; should one do so, the
            // event cannot be placed after a join that may yet fail.
            return self.fail(
                timestamp,
                SessionError::NotJoined("event before its join was decided"),
            );
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
                let joined = Hub::join(
                    &self.hub,
                    JoinRequest {
                        username,
                        timestamp,
                        transport: self.transport,
                        peer: &self.peer,
                        outbox: &self.outbox,
                        connected_at: self.connected_at,
                        now,
                    },
                );
                let name = username.chars().take(64).collect::<String>();
                match joined {
                    Joining::Done(joined) => self.joined(timestamp, name, joined),
                    Joining::Waiting(waiting) => {
                        self.joining = Some((waiting, timestamp, name));
                        Flow::Continue
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
                if !username.is_empty() && !rules::same_name(username, own) =>
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
        // A join still waiting is abandoned: when the stream applies it, its node finds no one
        // waiting and asks for its leave.
        self.joining = None;
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
        self.joining = None;
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
