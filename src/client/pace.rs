//! Pacing: the client sends no faster than the server's rate limit allows, so a script piping
//! a hundred lines gets them all delivered instead of refused (and, past the flood limit,
//! disconnected).
//!
//! chittyd limits each session with a token bucket: `rate_burst` messages at once, refilled at
//! `rate_per_second`; its welcome announces both ([`Offers`]). The [`Pacer`] is a bucket of the
//! client's own that mirrors it, started when the welcome arrives, after the server started its
//! own, so it is never fuller than the server's. One difference: it keeps one token of the burst
//! in reserve. Messages that left the client 200 ms apart may reach the server closer together
//! (the network does not keep the spacing), and the reserve absorbs that. With a burst of one
//! there is nothing to keep back, so the pace is 90 % of the rate instead. A server that
//! announces no limit, or sends no welcome at all (the original Chitty-Chat), is not paced.
//!
//! Time is a parameter (`now`), so the rules are tested without waiting.

use super::offers::{Offers, Rate};
use std::time::Duration;
use tokio::time::Instant;

/// The longest wait the pacer asks for: a server announcing an absurdly slow rate must not
/// make the client compute a wait that overflows.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// The client's own token bucket, in step with the server's.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// `None`: the server announced no limit; everything goes at once.
    rate: Option<Paced>,
    tokens: f64,
    refilled: Instant,
}

/// The pace the client keeps: the server's, less the margin for jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Paced {
    per_second: f64,
    burst: f64,
}

impl Paced {
    fn from(rate: Rate) -> Paced {
        if rate.burst >= 2 {
            Paced {
                per_second: rate.per_second,
                burst: f64::from(rate.burst - 1),
            }
        } else {
            Paced {
                per_second: rate.per_second * 0.9,
                burst: 1.0,
            }
        }
    }
}

impl Pacer {
    /// A pacer that never waits: before the server has said anything, or for a server with no
    /// limit.
    pub fn unlimited(now: Instant) -> Pacer {
        Pacer {
            rate: None,
            tokens: 0.0,
            refilled: now,
        }
    }

    /// A full bucket for what `offers` announces, starting at `now` (when the welcome arrived).
    pub fn new(offers: &Offers, now: Instant) -> Pacer {
        let rate = offers.rate.map(Paced::from);
        Pacer {
            rate,
            tokens: rate.map_or(0.0, |r| r.burst),
            refilled: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let Some(rate) = self.rate else {
            return;
        };
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.refilled = now;
    }

    /// How long from `now` until the next message may go; zero when it may go now.
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        let Some(rate) = self.rate else {
            return Duration::ZERO;
        };
        if self.tokens >= 1.0 {
            return Duration::ZERO;
        }
        let secs = (1.0 - self.tokens) / rate.per_second;
        Duration::try_from_secs_f64(secs).map_or(MAX_WAIT, |d| d.min(MAX_WAIT))
    }

    /// The instant the next message may go, seen from `now`.
    pub fn ready_at(&mut self, now: Instant) -> Instant {
        now + self.wait(now)
    }

    /// Counts a message sent at `now` (call it only when [`Pacer::wait`] said zero).
    pub fn take(&mut self, now: Instant) {
        self.refill(now);
        if self.rate.is_some() {
            self.tokens = (self.tokens - 1.0).max(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offers(per_second: f64, burst: u32) -> Offers {
        Offers {
            rate: Rate::new(per_second, burst),
            ..Offers::default()
        }
    }

    /// Sends `n` messages as fast as the pacer lets them go; returns when each went, as seconds
    /// after the start.
    fn send(pacer: &mut Pacer, start: Instant, n: usize) -> Vec<f64> {
        let mut now = start;
        (0..n)
            .map(|_| {
                now += pacer.wait(now);
                assert_eq!(pacer.wait(now), Duration::ZERO);
                pacer.take(now);
                (now - start).as_secs_f64()
            })
            .collect()
    }

    #[test]
    fn the_burst_less_one_goes_at_once_then_the_rate() {
        let start = Instant::now();
        let mut pacer = Pacer::new(&offers(5.0, 10), start);
        let times = send(&mut pacer, start, 12);
        assert!(times[..9].iter().all(|&t| t == 0.0), "{times:?}");
        for (i, t) in times[9..].iter().enumerate() {
            let want = 0.2 * (i + 1) as f64;
            assert!((t - want).abs() < 1e-6, "{times:?}");
        }
    }

    #[test]
    fn the_server_always_has_a_token_for_what_the_pacer_sends() {
        // The server's bucket, as chittyd keeps it, fed with the pacer's send times delayed by
        // up to 150 ms of jitter: it never refuses.
        let start = Instant::now();
        let (per_second, burst) = (5.0, 10);
        let mut pacer = Pacer::new(&offers(per_second, burst), start);
        let sent = send(&mut pacer, start, 200);
        let mut tokens = f64::from(burst);
        let mut last = 0.0;
        for (i, t) in sent.iter().enumerate() {
            let jitter = if i % 2 == 0 { 0.15 } else { 0.0 };
            let arrived = f64::max(last, t + jitter);
            tokens = (tokens + (arrived - last) * per_second).min(f64::from(burst));
            last = arrived;
            assert!(tokens >= 1.0, "message {i} at {arrived}: {tokens} tokens");
            tokens -= 1.0;
        }
    }

    #[test]
    fn a_burst_of_one_goes_at_ninety_percent_of_the_rate() {
        let start = Instant::now();
        let mut pacer = Pacer::new(&offers(10.0, 1), start);
        let times = send(&mut pacer, start, 3);
        assert_eq!(times[0], 0.0);
        assert!((times[1] - 1.0 / 9.0).abs() < 1e-6, "{times:?}");
        assert!((times[2] - 2.0 / 9.0).abs() < 1e-6, "{times:?}");
    }

    #[test]
    fn idle_time_refills_up_to_the_burst_only() {
        let start = Instant::now();
        let mut pacer = Pacer::new(&offers(5.0, 3), start);
        send(&mut pacer, start, 2);
        // A minute later the bucket is full again (2, the burst less the reserve), no fuller.
        let later = start + Duration::from_secs(60);
        let times = send(&mut pacer, later, 3);
        assert_eq!(&times[..2], [0.0, 0.0]);
        assert!((times[2] - 0.2).abs() < 1e-6, "{times:?}");
    }

    #[test]
    fn no_limit_or_no_welcome_never_waits() {
        let start = Instant::now();
        for mut pacer in [
            Pacer::unlimited(start),
            Pacer::new(&Offers::default(), start),
            Pacer::new(&offers(0.0, 10), start),
        ] {
            assert!(send(&mut pacer, start, 1000).iter().all(|&t| t == 0.0));
        }
    }

    #[test]
    fn an_absurd_rate_is_a_long_wait_not_a_panic() {
        let start = Instant::now();
        let mut pacer = Pacer::new(&offers(1e-300, 1), start);
        pacer.take(start);
        assert_eq!(pacer.wait(start), MAX_WAIT);
        assert_eq!(pacer.ready_at(start), start + MAX_WAIT);
    }
}
