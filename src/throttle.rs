//! A log throttle: one line per period, with a count of what was held back, so that a flood of
//! the same failure (refused connections, failing accepts, an audit file on a full disk) costs a
//! line every few seconds instead of one per event.
//!
//! It is plain logic that takes the time as a parameter, so it is tested without a clock. It sits
//! low in the crate because two layers use it: the accept path (`server`) and the audit writer.

use std::time::{Duration, Instant};

/// Lets one log line through per period and counts the ones held back, so that a flood of one
/// failure costs a line every few seconds, not one per event.
#[derive(Debug)]
pub struct Throttle {
    period: Duration,
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    /// At most one line per `period`.
    pub fn new(period: Duration) -> Throttle {
        Throttle {
            period,
            last: None,
            held: 0,
        }
    }

    /// An event happened: `Some(n)` when it should be logged now, `n` being how many were held
    /// back since the last line; `None` when it is held back.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.period => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }

    /// `Some(n)` when `n > 0` events were held back and a period has passed since the last line:
    /// the summary is due (the flood may have stopped, so no `hit` would ever report them).
    pub fn flush(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.period);
        if self.held > 0 && due {
            self.last = Some(now);
            Some(std::mem::take(&mut self.held))
        } else {
            None
        }
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_reports_what_it_held_back() {
        let mut th = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(th.hit(t0), Some(0));
        assert_eq!(th.hit(t0 + Duration::from_secs(1)), None);
        assert_eq!(th.hit(t0 + Duration::from_secs(2)), None);
        assert_eq!(th.flush(t0 + Duration::from_secs(5)), None, "not yet due");
        assert_eq!(th.flush(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(th.flush(t0 + Duration::from_secs(30)), None, "nothing held");
        assert_eq!(th.hit(t0 + Duration::from_secs(31)), Some(0));
    }
}
