//! The arithmetic of reservations, apart from any file or thread so that it is tested with the
//! counters as plain numbers.
//!
//! Two counters are reserved the same way: the Lamport clock (its value is the last time handed
//! out) and the user ids (its value is the next id to hand out). A reservation says how far they
//! may go: every Lamport time handed out is at most `reserved.lamport`, every user id handed out
//! is below `reserved.next_id`. A restart sets the counters to the saved reservation, so it is
//! past everything the last run handed out, however that run ended.

/// Both counters, or a reservation of both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// The Lamport clock: the last time handed out (reserved: the last that may be).
    pub lamport: u64,
    /// The next user id to hand out (reserved: the first that may not be).
    pub next_id: u64,
}

impl Counts {
    /// The counters of a server that has never run: no time handed out, ids start at 1.
    pub const FIRST: Counts = Counts {
        lamport: 0,
        next_id: 1,
    };
}

/// Whether the reservation should be renewed: less than half a block is left of either counter.
/// (Checked after every hub operation: a few loads and compares.)
pub fn due(now: Counts, reserved: Counts, block: u64) -> bool {
    let half = block / 2;
    now.lamport.saturating_add(half) > reserved.lamport
        || now.next_id.saturating_add(half) > reserved.next_id
}

/// The reservation to write when the counters are at `now`: a block past each. It never goes
/// below an earlier one, since the counters only grow.
pub fn ahead(now: Counts, block: u64) -> Counts {
    Counts {
        lamport: now.lamport.saturating_add(block),
        next_id: now.next_id.saturating_add(block),
    }
}

/// How many values of each counter have been handed out past the reservation (they would be
/// handed out again after a crash): zero while renewals keep up.
pub fn unsaved(now: Counts, reserved: Counts) -> Counts {
    Counts {
        lamport: now.lamport.saturating_sub(reserved.lamport),
        next_id: now.next_id.saturating_sub(reserved.next_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: u64 = 1_000_000;

    fn at(lamport: u64, next_id: u64) -> Counts {
        Counts { lamport, next_id }
    }

    #[test]
    fn a_fresh_reservation_is_a_block_ahead_and_renewed_at_half() {
        let reserved = ahead(Counts::FIRST, BLOCK);
        assert_eq!(reserved, at(1_000_000, 1_000_001));
        assert!(!due(Counts::FIRST, reserved, BLOCK));
        assert!(!due(at(500_000, 1), reserved, BLOCK), "exactly half left");
        assert!(
            due(at(500_001, 1), reserved, BLOCK),
            "less than half of the clock left"
        );
        assert!(!due(at(0, 500_001), reserved, BLOCK));
        assert!(
            due(at(0, 500_002), reserved, BLOCK),
            "less than half of the ids left"
        );
    }

    #[test]
    fn renewal_moves_the_reservation_past_the_counters_never_back() {
        let first = ahead(Counts::FIRST, BLOCK);
        let now = at(600_000, 42);
        let second = ahead(now, BLOCK);
        assert_eq!(second, at(1_600_000, 1_000_042));
        assert!(second.lamport >= first.lamport && second.next_id >= first.next_id);
        assert!(!due(now, second, BLOCK));
    }

    #[test]
    fn values_past_the_reservation_are_counted_as_unsaved() {
        let reserved = at(100, 11);
        assert_eq!(unsaved(at(100, 11), reserved), Counts::default());
        assert_eq!(unsaved(at(99, 3), reserved), Counts::default());
        assert_eq!(unsaved(at(130, 14), reserved), at(30, 3));
    }

    #[test]
    fn a_peer_that_drives_the_clock_far_ahead_makes_a_renewal_due_at_once() {
        let reserved = ahead(Counts::FIRST, BLOCK);
        let jumped = at(1 << 48, 2);
        assert!(due(jumped, reserved, BLOCK));
        assert_eq!(unsaved(jumped, reserved).lamport, (1 << 48) - BLOCK);
        assert_eq!(ahead(jumped, BLOCK).lamport, (1 << 48) + BLOCK);
    }

    #[test]
    fn the_arithmetic_saturates_instead_of_wrapping() {
        let top = at(u64::MAX, u64::MAX);
        assert_eq!(ahead(top, BLOCK), top);
        assert!(!due(top, top, BLOCK));
        assert!(due(top, at(0, 0), 2));
    }
}
