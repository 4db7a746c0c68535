//! The hub's limits: its configuration, and the per-session token bucket that enforces the
//! message rate. The bucket takes the time as a parameter (the hub's `TimeSource`), so it is
//! tested and fuzzed without a clock.

use std::time::{Duration, Instant};

/// Limits and policies of the hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Frames a participant may have waiting before it is cut off as a slow consumer.
    pub backlog: usize,
    /// Participants the server takes at once.
    pub max_participants: usize,
    /// Per-session message rate (token bucket); `None` is unlimited.
    pub rate: Option<RateLimit>,
    /// A stream that has not joined after this long is closed.
    pub join_deadline: Duration,
    /// How often a quiet WebSocket peer is pinged; one that answers nothing for twice this is
    /// dead and leaves.
    pub keepalive: Duration,
}

/// A token bucket: `burst` messages at once, refilled at `per_second`. Messages beyond it are
/// refused privately; `flood` of them within one `FLOOD_WINDOW` disconnect the session. The
/// window is fixed, not sliding: the first one starts when the session starts, and a refusal
/// more than `FLOOD_WINDOW` after the current window began starts the next one, counting from 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained messages per second.
    pub per_second: f64,
    /// Messages allowed at once.
    pub burst: u32,
    /// Refused messages within `FLOOD_WINDOW` that count as a flood.
    pub flood: u32,
}

/// The longest ban: longer requests are clamped to it (about 100 years).
pub const MAX_BAN: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The window in which refused messages are counted towards a flood.
pub const FLOOD_WINDOW: Duration = Duration::from_secs(10);

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 5.0,
            burst: 10,
            flood: 50,
        }
    }
}

impl HubConfig {
    /// The default backlog bound (frames a participant may fall behind).
    pub const DEFAULT_BACKLOG: usize = 4096;
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            backlog: Self::DEFAULT_BACKLOG,
            max_participants: 100_000,
            rate: Some(RateLimit::default()),
            join_deadline: Duration::from_secs(5),
            keepalive: Duration::from_secs(30),
        }
    }
}

/// A session's token bucket state.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    tokens: f64,
    refilled: Instant,
    refused: u32,
    window_start: Instant,
}

/// What the bucket says about one message.
pub(super) enum Verdict {
    Pass,
    Refuse,
    Flood(u32),
}

impl Bucket {
    /// A full bucket for a session that starts at `now`.
    pub(super) fn new(limit: Option<RateLimit>, now: Instant) -> Self {
        Bucket {
            tokens: limit.map_or(0.0, |l| f64::from(l.burst)),
            refilled: now,
            refused: 0,
            window_start: now,
        }
    }

    /// One message at `now` (never before the previous call's `now`).
    pub(super) fn take(&mut self, limit: Option<RateLimit>, now: Instant) -> Verdict {
        let Some(limit) = limit else {
            return Verdict::Pass;
        };
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.per_second).min(f64::from(limit.burst));
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Pass;
        }
        if now.saturating_duration_since(self.window_start) > FLOOD_WINDOW {
            self.window_start = now;
            self.refused = 0;
        }
        self.refused += 1;
        if self.refused >= limit.flood {
            Verdict::Flood(self.refused)
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate_then_calls_a_flood() {
        let limit = Some(RateLimit {
            per_second: 2.0,
            burst: 3,
            flood: 4,
        });
        let t0 = Instant::now();
        let mut b = Bucket::new(limit, t0);
        for _ in 0..3 {
            assert!(matches!(b.take(limit, t0), Verdict::Pass));
        }
        for _ in 0..3 {
            assert!(matches!(b.take(limit, t0), Verdict::Refuse));
        }
        // Half a second refills one token at 2 per second.
        let t1 = t0 + Duration::from_millis(500);
        assert!(matches!(b.take(limit, t1), Verdict::Pass));
        assert!(matches!(b.take(limit, t1), Verdict::Flood(4)));
        // Refusals older than the window no longer count, and the bucket has refilled.
        let later = t1 + FLOOD_WINDOW + Duration::from_secs(1);
        assert!(matches!(b.take(limit, later), Verdict::Pass));
        assert!(
            matches!(Bucket::new(None, t0).take(None, t0), Verdict::Pass),
            "no limit"
        );
    }
}
