//! Time in tests: tokio's paused clock held still while real sockets work ([`HeldClock`]), and
//! waiting for a condition in real time ([`wait_until`]), which works the same on paused time.
//!
//! Paused time (`#[tokio::test(start_paused = true)]`) turns a deadline of seconds into no wall
//! time at all, but by itself tokio advances the clock to the next timer whenever the runtime
//! has nothing to do, and a runtime waiting for the kernel to deliver a loopback segment has
//! nothing to do: a handshake or join deadline could fire while its request is still in flight.
//! So a test holds the clock for as long as it waits for sockets, and moves it itself, at the
//! points where what it waited for has happened.

use crate::PATIENCE;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a hold lasts at most, in real time: a test that hangs with the clock held then
/// fails through its own [`PATIENCE`] timeouts instead of hanging for ever.
const HOLD_LIMIT: Duration = Duration::from_secs(30);

/// How often [`wait_until`] looks again.
const POLL: Duration = Duration::from_millis(5);

/// Timers are kept in whole milliseconds, rounded up: a deadline `d` from now is due only once
/// time has moved `d + TICK` (`tokio::time::advance(d + TICK)`).
pub const TICK: Duration = Duration::from_millis(1);

/// Tokio's paused clock, held: it moves only through `tokio::time::advance`, never by itself,
/// until the hold is released (dropped). For tests on `#[tokio::test(start_paused = true)]`;
/// take it first thing, before any socket is opened.
pub struct HeldClock {
    /// Dropping it ends the blocking task that holds the clock.
    _release: std::sync::mpsc::Sender<()>,
}

impl HeldClock {
    /// Holds the clock. The hold is a blocking task: tokio does not auto-advance paused time
    /// while one runs (see `tokio::time::pause`, "Preventing auto-advance").
    pub fn hold() -> HeldClock {
        let (release, released) = std::sync::mpsc::channel::<()>();
        drop(tokio::task::spawn_blocking(move || {
            // Ends when the sender is dropped (Disconnected), or at the limit.
            let _ = released.recv_timeout(HOLD_LIMIT);
        }));
        HeldClock { _release: release }
    }

    /// Lets time run again: from now on the runtime advances the clock to the next timer
    /// whenever it has nothing else to do (for a shutdown that waits out a linger or the
    /// grace, once nothing the test checks is in flight). Waiting for another thread (the
    /// audit writer's) counts as nothing to do, so not while one is still working.
    pub fn release(self) {}
}

/// Waits until `done` returns true, looking every few milliseconds of real time; fails the test
/// after [`PATIENCE`] of real time, naming `what` it waited for.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not so after {PATIENCE:?}"
        );
        pause().await;
    }
}

/// Waits until `counter` (a server's counter or gauge, updated as it works) reads `want`.
pub async fn until_count(counter: &AtomicU64, want: u64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = counter.load(Ordering::Relaxed);
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the counter stayed at {now} instead of {want}"
        );
        pause().await;
    }
}

/// A few milliseconds of real time: a blocking task's sleep, not tokio's timer, so that it
/// passes the same on paused time (where a timer would end at once, or with the clock held,
/// never).
async fn pause() {
    tokio::task::spawn_blocking(|| std::thread::sleep(POLL))
        .await
        .expect("a sleeping blocking task");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message from another thread after `after` of real time: something the runtime waits
    /// for without any timer of its own, as it waits for a socket.
    fn from_another_thread(after: Duration) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            let _ = tx.send(());
        });
        rx
    }

    #[tokio::test(start_paused = true)]
    async fn unheld_paused_time_runs_ahead_of_what_the_runtime_waits_for() {
        // Why the hold exists: with nothing to do but wait for the message, the runtime runs
        // the clock to the timer at once.
        let first = tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => "the timer",
            _ = from_another_thread(Duration::from_secs(1)) => "the message",
        };
        assert_eq!(first, "the timer");
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_clock_moves_only_when_advanced() {
        let clock = HeldClock::hold();
        let started = tokio::time::Instant::now();
        let first = tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => "the timer",
            _ = from_another_thread(Duration::from_millis(50)) => "the message",
        };
        assert_eq!(first, "the message");
        assert_eq!(started.elapsed(), Duration::ZERO);

        let timer = tokio::spawn(tokio::time::sleep(Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(5) + TICK).await;
        timer.await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(5) + TICK);

        // Released, the clock runs by itself again: this sleep ends at once.
        clock.release();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(started.elapsed() >= Duration::from_secs(65));
    }

    #[tokio::test]
    async fn until_count_waits_for_the_counter() {
        let counter = std::sync::Arc::new(AtomicU64::new(0));
        let counting = std::sync::Arc::clone(&counter);
        std::thread::spawn(move || {
            for _ in 0..3 {
                std::thread::sleep(Duration::from_millis(5));
                counting.fetch_add(1, Ordering::Relaxed);
            }
        });
        until_count(&counter, 3).await;
        assert_eq!(counter.load(Ordering::Relaxed), 3);
    }
}
