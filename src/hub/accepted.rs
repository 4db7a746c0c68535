//! What passes between the two halves of a hub operation (`hub::apply`): [`Accepted`], an event
//! its origin has decided to let in, carrying everything `apply` needs as plain values and
//! borrowed text, and [`Applied`], what applying it came to, for the origin to answer with. In
//! a cluster an `Accepted` is what a node publishes to the stream (`hub::replica`).

use super::outbox::Outbox;
use super::{BanInfo, LeaveReason, SessionError, Shown, Target, Transport, UserInfo};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A new session as its origin opened it.
#[derive(Clone, Copy)]
pub(crate) struct Opening<'a> {
    /// The wire form it reads.
    pub transport: Transport,
    /// Its address, for the admin list and the audit trail.
    pub peer: &'a Arc<str>,
    /// Where its frames go: `None` for a session of another node, which delivers them.
    pub outbox: Option<&'a Outbox>,
    /// When it connected, in the origin's time.
    pub connected_at: Instant,
}

/// An event its origin has let in, with everything `apply` needs and nothing it must look up
/// elsewhere. Times are the origin's readings (see the module's notes).
#[derive(Clone)]
pub(crate) enum Accepted<'a> {
    /// A join whose name passed the rules.
    Join {
        /// The session that joins.
        opening: Opening<'a>,
        /// The client's Lamport timestamp.
        timestamp: u64,
        /// The name as typed.
        username: &'a str,
        /// Its folded form (`rules::fold`), the name table's key.
        key: String,
        /// When it was decided: bans are judged at this time.
        at: Instant,
    },
    /// A direct-message-only session (a WebSocket user without a name).
    Connect {
        /// The session.
        opening: Opening<'a>,
        /// When it was decided.
        at: Instant,
    },
    /// A broadcast within the sender's rate, with text that passed the rules.
    Message {
        /// The sender's user id.
        id: u64,
        /// The client's Lamport timestamp.
        timestamp: u64,
        /// The text.
        text: &'a str,
        /// When it was decided (the sender's last activity).
        at: Instant,
    },
    /// A direct message within the sender's rate, with text that passed the rules.
    Direct {
        /// The sender's user id.
        id: u64,
        /// The client's Lamport timestamp.
        timestamp: u64,
        /// The recipient's user id: whether it is connected is decided in order, by `apply`.
        recipient: u64,
        /// The text.
        text: &'a str,
        /// When it was decided (the sender's last activity).
        at: Instant,
    },
    /// A roster request within the sender's rate.
    Roster {
        /// The asker's user id.
        id: u64,
        /// The client's Lamport timestamp.
        timestamp: u64,
    },
    /// Input refused at its origin: a private ERROR to the sender alone.
    Refuse {
        /// The sender's user id.
        id: u64,
        /// The client's Lamport timestamp.
        timestamp: u64,
        /// The recipient it named, 0 for none.
        recipient: u64,
        /// Why, for the participant.
        why: Cow<'a, str>,
        /// The refused text's length in characters (audited).
        chars: usize,
    },
    /// A session ends (its own leave, a disconnect, a violation, a flood).
    Leave {
        /// Its user id.
        id: u64,
        /// The client's Lamport timestamp, 0 when it sent none.
        timestamp: u64,
        /// How it left.
        reason: LeaveReason,
    },
    /// An operator removes a session, and may ban its name.
    Kick {
        /// Whom.
        target: Target<'a>,
        /// Why, for the participant and the trail.
        reason: &'a str,
        /// How long the name is banned for, if it is.
        ban: Option<Duration>,
        /// Who did it.
        actor: &'a str,
        /// When it was decided: the ban counts from here.
        at: Shown,
    },
    /// An operator lifts a ban.
    Unban {
        /// Any form of the banned name.
        name: &'a str,
        /// Who did it.
        actor: &'a str,
        /// When it was decided: a ban that has ended by then is not lifted.
        at: Shown,
    },
    /// An operator's notice to everyone.
    Announce {
        /// The text.
        text: &'a str,
        /// Who sent it.
        actor: &'a str,
    },
}

/// What applying an event came to, for its origin to answer with.
#[derive(Debug)]
pub(crate) enum Applied {
    /// A join or a direct-only registration: the new user id, or why it was refused.
    Opened(Result<u64, SessionError>),
    /// A leave: whether the session was still there to leave.
    Left(bool),
    /// A kick: the session as it was, if there was one.
    Kicked(Option<UserInfo>),
    /// An unban: the ban lifted, if one was in force.
    Unbanned(Option<BanInfo>),
    /// An announcement, at this Lamport time.
    Announced(u64),
    /// Anything else: its frames are out.
    Done,
}

impl Applied {
    /// What a join or a registration came to. Each `Accepted` variant applies as one `Applied`
    /// variant, so the other arms are never taken.
    pub(super) fn opened(self) -> Result<u64, SessionError> {
        match self {
            Applied::Opened(opened) => opened,
            other => unreachable!("a join or a registration applied as {other:?}"),
        }
    }

    /// Whether a leave found its session.
    pub(super) fn left(self) -> bool {
        matches!(self, Applied::Left(true))
    }

    /// What a kick found.
    pub(super) fn kicked(self) -> Option<UserInfo> {
        match self {
            Applied::Kicked(info) => info,
            _ => None,
        }
    }

    /// What an unban lifted.
    pub(super) fn unbanned(self) -> Option<BanInfo> {
        match self {
            Applied::Unbanned(lifted) => lifted,
            _ => None,
        }
    }

    /// An announcement's Lamport time.
    pub(super) fn announced(self) -> u64 {
        match self {
            Applied::Announced(lamport) => lamport,
            other => unreachable!("an announcement applied as {other:?}"),
        }
    }
}
