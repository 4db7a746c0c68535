//! The Lamport clock: one atomic counter shared by the hub (server) or owned by a client.
//!
//! Every update is a single atomic read-modify-write (a CAS loop), never a load followed by a
//! store, so concurrent updates can neither move the clock backwards nor hand out the same time
//! twice.

use std::sync::atomic::{AtomicU64, Ordering};

/// The largest timestamp accepted from a peer. Far beyond anything a real run reaches (2^48
/// events), it keeps a hostile peer from driving the clock to `u64::MAX`, and every time stays an
/// exact JSON number for WebSocket clients.
pub const MAX_PEER_TIMESTAMP: u64 = 1 << 48;

/// A Lamport clock.
#[derive(Debug, Default)]
pub struct LamportClock {
    time: AtomicU64,
}

impl LamportClock {
    /// A clock at time 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// A clock at time `t`: a server that continues from its saved state.
    pub fn starting_at(t: u64) -> Self {
        LamportClock {
            time: AtomicU64::new(t),
        }
    }

    /// The current time, without advancing it.
    pub fn now(&self) -> u64 {
        self.time.load(Ordering::Acquire)
    }

    /// A local event: advances the clock by one and returns the new time.
    pub fn tick(&self) -> u64 {
        self.time.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// An event received with the sender's time `remote`: the clock becomes
    /// `max(local, remote) + 1` in one atomic update, and that new time is returned.
    pub fn observe(&self, remote: u64) -> u64 {
        let mut current = self.time.load(Ordering::Acquire);
        loop {
            let next = current.max(remote).saturating_add(1);
            match self.time.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return next,
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    #[test]
    fn tick_and_observe_follow_lamport_rules() {
        let clock = LamportClock::new();
        assert_eq!(clock.now(), 0);
        assert_eq!(clock.tick(), 1);
        assert_eq!(
            clock.observe(10),
            11,
            "a later remote time pulls the clock forward"
        );
        assert_eq!(
            clock.observe(3),
            12,
            "an earlier remote time still advances by one"
        );
        assert_eq!(clock.tick(), 13);
        assert_eq!(clock.now(), 13);
    }

    #[test]
    fn concurrent_updates_never_repeat_or_go_backwards() {
        const THREADS: u64 = 8;
        const PER_THREAD: u64 = 20_000;
        let clock = Arc::new(LamportClock::new());
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let clock = Arc::clone(&clock);
                std::thread::spawn(move || {
                    let mut seen = Vec::with_capacity(PER_THREAD as usize);
                    let mut last = 0;
                    for i in 0..PER_THREAD {
                        // Mix local ticks with remote times that are sometimes ahead.
                        let t = if i % 3 == 0 {
                            clock.observe(clock.now() + (t + i) % 5)
                        } else {
                            clock.tick()
                        };
                        assert!(
                            t > last,
                            "a thread saw the clock go backwards: {t} after {last}"
                        );
                        last = t;
                        seen.push(t);
                    }
                    seen
                })
            })
            .collect();
        let mut all = HashSet::new();
        for handle in handles {
            for t in handle.join().expect("clock thread panicked") {
                assert!(all.insert(t), "time {t} was handed out twice");
            }
        }
        assert_eq!(all.len() as u64, THREADS * PER_THREAD);
        assert!(clock.now() >= THREADS * PER_THREAD);
    }

    #[test]
    fn observe_saturates_instead_of_overflowing() {
        let clock = LamportClock::new();
        assert_eq!(clock.observe(u64::MAX), u64::MAX);
    }
}
