//! A model of the hub's time-driven rules, written from their documentation (README, "Limits
//! and TLS"; `RateLimit`, `MAX_BAN`, `FLOOD_WINDOW`), not from the hub's code: the per-session token bucket
//! and its flood window, bans, the join deadline, and what each outcome looks like on the wire.
//!
//! Time is counted in ticks of 1/64 s. Every duration the script gives the hub is a whole number
//! of ticks and every rate a power of two per second, so the hub's floating-point bucket is
//! exact and this integer model must agree with it to the last message, not approximately.

use super::script::Script;
use crate::frame::Frame;
use chitty::hub::outbox::Ending;
use chitty::hub::rules::check_username;
use chitty::hub::{FLOOD_WINDOW, HubConfig, MAX_BAN, RateLimit, SessionError, UserInfo};
use std::collections::HashMap;
use std::time::Duration;

/// Ticks per second.
pub(super) const TICKS: u64 = 64;

/// `ticks` as a duration (exact: a tick is 15,625,000 ns).
pub(super) fn duration(ticks: u64) -> Duration {
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000 / TICKS))
}

/// The flood window in ticks.
fn flood_window() -> u64 {
    let ticks = FLOOD_WINDOW.as_nanos() * u128::from(TICKS) / 1_000_000_000;
    assert_eq!(
        duration(ticks as u64),
        FLOOD_WINDOW,
        "the flood window is whole ticks"
    );
    ticks as u64
}

/// The rate limit of one script: `2^log2` messages per second, bursts of `burst`, a flood at
/// `flood` refusals in one window.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rate {
    log2: i32,
    burst: u32,
    flood: u32,
}

/// The bucket counts in 1/256 of a message, so that a tick refills a whole number of them.
const UNIT: u64 = 256;

impl Rate {
    fn per_second(self) -> f64 {
        2f64.powi(self.log2)
    }

    /// What a tick refills, in units: `2^log2 * 256 / 64`.
    fn per_tick(self) -> u64 {
        1 << (self.log2 + 2)
    }

    fn full(self) -> u64 {
        UNIT * u64::from(self.burst)
    }

    /// The refusal a sender gets, as the README words it.
    pub fn refusal(self) -> String {
        format!(
            "rate limit: at most {} messages per second (bursts of {}); message dropped",
            self.per_second(),
            self.burst
        )
    }
}

/// What the script sets: the rate limit (off one time in eight) and the join deadline.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub rate: Option<Rate>,
    /// The join deadline in whole seconds.
    pub deadline: u64,
}

impl Limits {
    pub fn of(script: &Script<'_>) -> Limits {
        let rate = (!script.rate.is_multiple_of(8)).then(|| Rate {
            log2: i32::from(script.rate / 8 % 6) - 2,
            burst: 1 + u32::from(script.burst_flood % 4),
            flood: 1 + u32::from(script.burst_flood / 4 % 6),
        });
        Limits {
            rate,
            deadline: 1 + u64::from(script.deadline % 8),
        }
    }

    pub fn config(&self, backlog: usize, max_participants: usize) -> HubConfig {
        HubConfig {
            backlog,
            max_participants,
            rate: self.rate.map(|r| RateLimit {
                per_second: r.per_second(),
                burst: r.burst,
                flood: r.flood,
            }),
            join_deadline: self.join_deadline(),
            ..HubConfig::default()
        }
    }

    pub fn join_deadline(&self) -> Duration {
        Duration::from_secs(self.deadline)
    }
}

/// One session's token bucket.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    /// In `UNIT`s.
    tokens: u64,
    refilled: u64,
    window_start: u64,
    refused: u32,
}

/// What the bucket says about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Pass,
    Refuse,
    Flood(u32),
}

impl Bucket {
    /// Full, for a session that starts at `now`; its first flood window starts then too.
    pub fn new(rate: Rate, now: u64) -> Bucket {
        Bucket {
            tokens: rate.full(),
            refilled: now,
            window_start: now,
            refused: 0,
        }
    }

    /// `burst` at once, refilled at the rate; a refusal more than the window after the
    /// window's start opens a new window; `flood` refusals in one window are a flood.
    pub fn take(&mut self, rate: Rate, now: u64) -> Verdict {
        let gain = (now - self.refilled).saturating_mul(rate.per_tick());
        self.tokens = self.tokens.saturating_add(gain).min(rate.full());
        self.refilled = now;
        if self.tokens >= UNIT {
            self.tokens -= UNIT;
            return Verdict::Pass;
        }
        if now - self.window_start > flood_window() {
            self.window_start = now;
            self.refused = 0;
        }
        self.refused += 1;
        if self.refused >= rate.flood {
            Verdict::Flood(self.refused)
        } else {
            Verdict::Refuse
        }
    }
}

/// What one Lamport time must be, as far as the time-driven rules say.
#[derive(Debug)]
pub(super) enum Expect {
    /// A message its sender's bucket let through: whatever it became, not a rate refusal.
    Passed,
    /// A message the bucket refused: this private frame, to slot `slot` alone.
    Refused { slot: usize, frame: Frame },
    /// The message that made user `id` (slot `slot`) a flooder: the only thing anyone sees at
    /// this time is its leave, and the flooder sees nothing.
    Flood { slot: usize, id: u64 },
    /// The shutdown: this very frame, to every session.
    Shutdown(Frame),
}

/// An expectation and the slots that must have received its frame, unless they were cut off
/// (an error ending drops what was queued).
#[derive(Debug)]
pub(super) struct Expected {
    pub what: Expect,
    pub reach: Vec<usize>,
}

/// The model's state: its time, the bans, and what it expects.
#[derive(Debug)]
pub(super) struct Model {
    /// Ticks since the hub was created.
    pub now: u64,
    pub limits: Limits,
    /// Name to the tick its ban ends.
    bans: HashMap<String, u64>,
    /// The server has begun to shut down.
    pub closing: bool,
    /// Lamport time to what it must be.
    pub expect: HashMap<u64, Expected>,
    /// What the hub's counters must read.
    pub rate_limited: u64,
    pub floods: u64,
    pub join_timeouts: u64,
}

impl Model {
    pub fn new(limits: Limits) -> Model {
        Model {
            now: 0,
            limits,
            bans: HashMap::new(),
            closing: false,
            expect: HashMap::new(),
            rate_limited: 0,
            floods: 0,
            join_timeouts: 0,
        }
    }

    /// Whether a session that started at tick `connected` is past its join deadline.
    pub fn past_deadline(&self, connected: u64) -> bool {
        self.now - connected >= self.limits.deadline * TICKS
    }

    /// A kick banned `name` for `seconds` (at most `MAX_BAN`), from now.
    pub fn ban(&mut self, name: &str, seconds: u64) {
        let until = self.now + seconds.min(MAX_BAN.as_secs()) * TICKS;
        self.bans.insert(name.to_owned(), until);
    }

    /// How a join as `name` ends, with `users` in the hub of at most `max`. Each rule is the
    /// README's; which one is reported when several apply is the hub's order (a valid name, not
    /// shutting down, not banned, not taken, not full).
    pub fn join(&self, name: &str, users: &[UserInfo], max: usize) -> Result<(), SessionError> {
        check_username(name)?;
        if self.closing {
            return Err(SessionError::ShuttingDown);
        }
        if let Some(&until) = self.bans.get(name)
            && self.now < until
        {
            // The seconds left, rounded up.
            let seconds = (until - self.now).div_ceil(TICKS);
            let name = name.to_owned();
            return Err(SessionError::Banned { name, seconds });
        }
        if users.iter().any(|u| u.name == name) {
            return Err(SessionError::NameTaken(name.to_owned()));
        }
        self.connect(users, max)
    }

    /// How a direct-message-only registration ends.
    pub fn connect(&self, users: &[UserInfo], max: usize) -> Result<(), SessionError> {
        if self.closing {
            return Err(SessionError::ShuttingDown);
        }
        if users.len() >= max {
            return Err(SessionError::Full(max));
        }
        Ok(())
    }

    /// The join deadline's ending.
    pub fn join_timeout(&mut self) -> Ending {
        self.join_timeouts += 1;
        Ending::Error(SessionError::JoinTimeout(self.limits.join_deadline()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_model_follows_the_documented_rules() {
        let rate = Rate {
            log2: 1,
            burst: 2,
            flood: 2,
        };
        let mut b = Bucket::new(rate, 0);
        assert_eq!(b.take(rate, 0), Verdict::Pass);
        assert_eq!(b.take(rate, 0), Verdict::Pass);
        assert_eq!(b.take(rate, 0), Verdict::Refuse);
        // Two per second: half a second is one message.
        assert_eq!(b.take(rate, 32), Verdict::Pass);
        assert_eq!(b.take(rate, 32), Verdict::Flood(2));
        assert_eq!(
            rate.refusal(),
            "rate limit: at most 2 messages per second (bursts of 2); message dropped"
        );
        let slow = Rate { log2: -2, ..rate };
        assert_eq!(
            slow.refusal(),
            "rate limit: at most 0.25 messages per second (bursts of 2); message dropped"
        );
        assert_eq!(duration(64 * 10), FLOOD_WINDOW);
        assert_eq!(flood_window(), 640);
    }
}
