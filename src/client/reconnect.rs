//! Reconnecting: when a lost session is worth another try, how long to wait first, and what to
//! tell the person. Line mode and the full-screen UI both drive their sessions through
//! [`Reconnector`], so the policy lives here and nowhere else.
//!
//! The rules:
//! - The first join is not retried: a wrong address or a refused name should fail at once, with
//!   the exit code that says why. Reconnecting starts only once the client has been in the room.
//! - A refusal is final ([`ClientError::is_refusal`]: a name taken or invalid, a ban, a protocol
//!   error, a kick): the same join would be refused again.
//! - Everything else is retried after a back-off: a connection refused or reset, UNAVAILABLE, a
//!   full server, and a server shutdown. chittyd ends every stream cleanly when it stops, after a
//!   message of kind SHUTDOWN ([`is_shutdown_notice`]); a stream that ends after it is a restart
//!   to be survived ([`ClientError::ServerStopped`]). A stream the server ends cleanly without it
//!   was ended on purpose, and the client stops.
//! - The person's own leave (end of input, Ctrl-C, `/quit`, Esc) never reconnects.
//! - Messages typed while disconnected wait in a [`Queue`] of at most [`QUEUE_LIMIT`] entries
//!   and are sent once the client is back in the room; beyond that they are refused with a
//!   notice. A leave while disconnected drops what is queued, and says how much.
//! - The client keeps one Lamport clock across every connection, so its times only ever grow.

use super::{ClientError, Participant, ServerAddr};
use crate::clock::LamportClock;
use crate::pb::{self, chat_message::Kind};
use std::collections::VecDeque;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

/// How many messages typed while disconnected are kept for sending after the rejoin. Enough for
/// a person who keeps typing through a restart; a script piping faster than that is told which
/// lines were refused rather than the client buffering without bound.
pub const QUEUE_LIMIT: usize = 100;

/// When and how often to reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Whether to reconnect at all (`--no-reconnect` turns it off).
    pub enabled: bool,
    /// The longest first wait; each attempt doubles it.
    pub base: Duration,
    /// The longest wait between two attempts.
    pub cap: Duration,
    /// Attempts in a row before giving up; `None` retries until the person leaves.
    pub max_attempts: Option<u32>,
}

impl Default for Policy {
    /// 250 ms, doubling up to 30 s, with no limit on the attempts.
    fn default() -> Policy {
        Policy {
            enabled: true,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(30),
            max_attempts: None,
        }
    }
}

/// Exponential back-off with full jitter: attempt `n` waits a uniformly random time between zero
/// and `min(cap, base × 2^(n-1))`, so that clients cut off together by a restart do not all come
/// back in the same instant.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    /// Attempts since the last success.
    attempt: u32,
    /// The state of the random source (splitmix64).
    random: u64,
}

impl Backoff {
    /// A back-off whose random waits come from `seed`; equal seeds give equal waits.
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Backoff {
        Backoff {
            base,
            cap,
            attempt: 0,
            random: seed,
        }
    }

    /// A back-off seeded from the process's own randomness, so two clients differ.
    pub fn seeded(base: Duration, cap: Duration) -> Backoff {
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Backoff::new(base, cap, seed)
    }

    /// The longest wait before attempt `attempt` (counting from 1).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.base
            .checked_mul(1 << doublings)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// Counts one more attempt; returns its number and how long to wait before making it.
    pub fn next_delay(&mut self) -> (u32, Duration) {
        self.attempt = self.attempt.saturating_add(1);
        let random = splitmix64(&mut self.random);
        (
            self.attempt,
            full_jitter(self.ceiling(self.attempt), random),
        )
    }

    /// Attempts made since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The connection is back: the next outage starts again from the shortest wait.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A wait in `[0, ceiling]`, chosen by `random` (uniform over `u64` gives uniform waits).
pub fn full_jitter(ceiling: Duration, random: u64) -> Duration {
    let nanos = ceiling.as_nanos().min(u128::from(u64::MAX));
    let picked = (nanos * (u128::from(random) + 1)) >> 64;
    Duration::from_nanos(u64::try_from(picked).unwrap_or(u64::MAX))
}

/// One step of splitmix64: small, fast, and plenty for spreading waits.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether a lost session is worth another try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The connection failed, or the server went away: try again after a wait.
    Retry,
    /// The server refused us, or something local failed: trying again cannot help.
    GiveUp,
}

/// Sorts an error that ended a session into retry or give up.
pub fn classify(err: &ClientError) -> Verdict {
    match err {
        e if e.is_refusal() => Verdict::GiveUp,
        // A server that is down may come back; a certificate, or TLS on one end and not the
        // other, will not change by waiting.
        ClientError::Dial(e) if e.is_transient() => Verdict::Retry,
        ClientError::Dial(_) => Verdict::GiveUp,
        ClientError::Server(_)
        | ClientError::Connect { .. }
        | ClientError::Closed
        | ClientError::ServerStopped => Verdict::Retry,
        ClientError::Address(..)
        | ClientError::Io(_)
        | ClientError::Log { .. }
        | ClientError::Terminal(_)
        | ClientError::GaveUp { .. }
        | ClientError::Undelivered { .. } => Verdict::GiveUp,
    }
}

/// Whether `msg` is the notice chittyd sends every session just before it stops (its kind says
/// so; the text is for people and may change).
pub fn is_shutdown_notice(msg: &pb::ChatMessage) -> bool {
    msg.kind == Kind::Shutdown as i32
}

/// A decision to try again.
///
/// Its text tells the person what they do not know yet, and no more: the first attempt of an
/// outage says why the connection was lost; a later one says why the previous attempt failed
/// only when that reason is new; otherwise it is the short `reconnecting in 1.6 s (attempt 4)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Which attempt is next, counting from 1 in each outage.
    pub attempt: u32,
    /// How long to wait before it.
    pub delay: Duration,
    /// Why the connection is gone (attempt 1) or the previous attempt failed, for the person.
    pub why: String,
    /// Whether `why` is what the previous line of this outage said already.
    pub repeated: bool,
}

impl fmt::Display for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (delay, attempt) = (self.delay.as_secs_f64(), self.attempt);
        match (attempt, self.repeated) {
            (1, _) => write!(f, "connection lost: {}; ", self.why)?,
            (_, false) => write!(f, "attempt {} failed: {}; ", attempt - 1, self.why)?,
            (_, true) => {}
        }
        write!(f, "reconnecting in {delay:.1} s (attempt {attempt})")
    }
}

/// What to do after a session ended.
#[derive(Debug)]
pub enum Next {
    /// Wait, then join again.
    Retry(Retry),
    /// Stop with this result.
    Stop(Result<(), ClientError>),
}

/// A session's way through connections: the first join, then, each time the connection is
/// lost, whether to try again and when. Owns the Lamport clock every connection shares.
#[derive(Debug)]
pub struct Reconnector {
    server: ServerAddr,
    username: String,
    clock: Arc<LamportClock>,
    policy: Policy,
    backoff: Backoff,
    /// Whether our own join notice has ever arrived: before that, nothing is retried.
    been_in: bool,
    /// Whether the connection was lost and we are not back in the room yet.
    away: bool,
    /// The reason the last line of this outage gave, so the next says it only when it changed.
    last_why: Option<String>,
}

impl Reconnector {
    /// Ready to join `server` as `username` under `policy`.
    pub fn new(server: &ServerAddr, username: &str, policy: Policy) -> Reconnector {
        Reconnector {
            server: server.clone(),
            username: username.to_owned(),
            clock: Arc::new(LamportClock::new()),
            policy,
            backoff: Backoff::seeded(policy.base, policy.cap),
            been_in: false,
            away: false,
            last_why: None,
        }
    }

    /// The Lamport clock that outlives every connection.
    pub fn clock(&self) -> &Arc<LamportClock> {
        &self.clock
    }

    /// Connects and sends the join, with the shared clock.
    pub async fn join(&self) -> Result<Participant, ClientError> {
        Participant::join_with_clock(&self.server, &self.username, Arc::clone(&self.clock)).await
    }

    /// Whether the connection is lost and not yet back.
    pub fn is_away(&self) -> bool {
        self.away
    }

    /// Our own join notice arrived with our id: we are in the room. After an outage, returns
    /// what to tell the person.
    pub fn joined(&mut self, id: u64) -> Option<String> {
        self.been_in = true;
        self.backoff.reset();
        self.last_why = None;
        if std::mem::take(&mut self.away) {
            Some(format!("reconnected as {} (#{id})", self.username))
        } else {
            None
        }
    }

    /// The session ended with `ended` (`Ok` when the server ended the stream cleanly without a
    /// shutdown notice; a shutdown is [`ClientError::ServerStopped`]). Says whether to try again.
    pub fn lost(&mut self, ended: Result<(), ClientError>) -> Next {
        let err = match ended {
            Ok(()) => return Next::Stop(Ok(())),
            Err(e) => e,
        };
        if !self.been_in {
            return Next::Stop(Err(err));
        }
        if !self.policy.enabled {
            // Without reconnecting, a server shutdown ends the session as it always did.
            return Next::Stop(match err {
                ClientError::ServerStopped => Ok(()),
                e => Err(e),
            });
        }
        let give_up = |exhausted, last| ClientError::GaveUp {
            exhausted,
            last: Box::new(last),
        };
        if classify(&err) == Verdict::GiveUp {
            return Next::Stop(Err(if self.away { give_up(None, err) } else { err }));
        }
        if let Some(max) = self.policy.max_attempts
            && self.backoff.attempts() >= max
        {
            return Next::Stop(Err(give_up(Some(max), err)));
        }
        self.away = true;
        let (attempt, delay) = self.backoff.next_delay();
        let why = err.to_string();
        let repeated = attempt > 1 && self.last_why.as_deref() == Some(why.as_str());
        self.last_why = Some(why.clone());
        Next::Retry(Retry {
            attempt,
            delay,
            why,
            repeated,
        })
    }
}

/// Messages typed while disconnected, oldest first, at most [`QUEUE_LIMIT`].
#[derive(Debug)]
pub struct Queue<T> {
    items: VecDeque<T>,
    limit: usize,
}

impl<T> Default for Queue<T> {
    fn default() -> Queue<T> {
        Queue::new(QUEUE_LIMIT)
    }
}

impl<T> Queue<T> {
    /// An empty queue that holds at most `limit` items.
    pub fn new(limit: usize) -> Queue<T> {
        Queue {
            items: VecDeque::new(),
            limit,
        }
    }

    /// Keeps `item` for later, or gives it back when the queue is full.
    pub fn push(&mut self, item: T) -> Result<usize, T> {
        if self.items.len() >= self.limit {
            return Err(item);
        }
        self.items.push_back(item);
        Ok(self.items.len())
    }

    /// Takes the oldest item.
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    /// Puts an item taken with [`Queue::pop`] back in front, to go first after all (a send
    /// that failed). Right after a pop there is room for it, so the bound holds.
    pub fn put_back(&mut self, item: T) {
        self.items.push_front(item);
    }

    /// Takes everything, oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.items.drain(..)
    }

    /// How many items wait.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The most it holds.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

#[cfg(test)]
#[path = "reconnect_tests.rs"]
mod tests;
