//! Where the hub gets the time. Every decision that depends on time (the token bucket and its
//! flood window, bans, the join deadline, when a session connected and last spoke, the uptime)
//! reads it from the [`TimeSource`] the hub was created with, never from the system's clocks
//! directly: chittyd passes [`SystemClocks`], and a check that wants to drive time itself (the
//! fuzz targets, unit tests) passes a [`ManualTime`] and advances it, as `Bucket`, `AddrTable`
//! and `Throttle` already take the time as a parameter.
//!
//! Decisions are measured in monotonic time only (an `Instant`), one reading per operation.
//! Wall-clock times are shown to people (the admin service's user list), so they are derived
//! from the monotonic ones when the list is made: a session's `connected_at` is "the wall clock
//! now, minus how long ago it connected". The message path therefore reads one clock, and a step
//! of the system's wall clock moves every shown time together instead of reordering them.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// The hub's clocks.
pub trait TimeSource: Send + Sync {
    /// The monotonic time every decision is measured in.
    fn now(&self) -> Instant;
    /// The wall-clock time at this moment, to show the monotonic times as dates.
    fn wall(&self) -> SystemTime;
}

/// The system's clocks: what chittyd runs on.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClocks;

impl TimeSource for SystemClocks {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Time that moves only when told to: both clocks start at fixed readings and advance together
/// by exactly what [`ManualTime::advance`] is given, so runs are reproducible.
#[derive(Debug)]
pub struct ManualTime {
    start: Instant,
    wall_start: SystemTime,
    elapsed: Mutex<Duration>,
}

impl ManualTime {
    /// Time standing at `wall` on the wall clock (and at an arbitrary monotonic instant).
    pub fn new(wall: SystemTime) -> ManualTime {
        ManualTime {
            start: Instant::now(),
            wall_start: wall,
            elapsed: Mutex::new(Duration::ZERO),
        }
    }

    /// Moves both clocks forward by `by`. Time that either clock could not represent (billions
    /// of years on) is not reached: the clocks stay where they are rather than wrap or go back.
    pub fn advance(&self, by: Duration) {
        let mut elapsed = self.elapsed.lock().unwrap_or_else(|e| e.into_inner());
        let next = elapsed.saturating_add(by);
        if self.start.checked_add(next).is_some() && self.wall_start.checked_add(next).is_some() {
            *elapsed = next;
        }
    }

    /// How far the clocks have been advanced since `new`.
    pub fn elapsed(&self) -> Duration {
        *self.elapsed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TimeSource for ManualTime {
    fn now(&self) -> Instant {
        // `advance` keeps this representable.
        self.start.checked_add(self.elapsed()).unwrap_or(self.start)
    }

    fn wall(&self) -> SystemTime {
        self.wall_start
            .checked_add(self.elapsed())
            .unwrap_or(self.wall_start)
    }
}

/// `then`, a monotonic time at or before `now`, as a wall-clock time, given that `now` is
/// `wall` on the wall clock; never before the Unix epoch (a clock that was never set).
pub(super) fn as_wall(then: Instant, now: Instant, wall: SystemTime) -> SystemTime {
    wall.checked_sub(now.saturating_duration_since(then))
        .filter(|t| *t >= SystemTime::UNIX_EPOCH)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_time_moves_both_clocks_by_what_it_is_told() {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let time = ManualTime::new(wall);
        let t0 = time.now();
        assert_eq!(time.now(), t0, "it does not move by itself");
        assert_eq!(time.wall(), wall);
        time.advance(Duration::from_millis(1500));
        assert_eq!(time.now() - t0, Duration::from_millis(1500));
        assert_eq!(time.wall(), wall + Duration::from_millis(1500));
        assert_eq!(time.elapsed(), Duration::from_millis(1500));
        let before = time.now();
        time.advance(Duration::MAX);
        assert_eq!(time.now(), before, "stands still rather than wrap");
        assert_eq!(time.elapsed(), Duration::from_millis(1500));
    }

    #[test]
    fn a_monotonic_time_is_shown_as_the_wall_clock_minus_its_age() {
        let time = ManualTime::new(SystemTime::UNIX_EPOCH + Duration::from_secs(70));
        let then = time.now();
        time.advance(Duration::from_secs(30));
        let (now, wall) = (time.now(), time.wall());
        assert_eq!(wall, SystemTime::UNIX_EPOCH + Duration::from_secs(100));
        assert_eq!(
            as_wall(then, now, wall),
            SystemTime::UNIX_EPOCH + Duration::from_secs(70)
        );
        assert_eq!(as_wall(now, now, wall), wall);
        // Older than the epoch: shown as the epoch, not a panic.
        assert_eq!(
            as_wall(then, now, SystemTime::UNIX_EPOCH + Duration::from_secs(10)),
            SystemTime::UNIX_EPOCH
        );
    }
}
