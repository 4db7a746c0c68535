//! The room log: every broadcast, encoded once per wire form, appended once to a ring that every
//! participant's writer reads with its own cursor.
//!
//! This is what keeps fan-out cheap: the hub's cost per broadcast does not grow with the room
//! (one append, not one push per recipient), a writer copies a whole run of frames out of the
//! ring under one read lock, and no frame carries a reference count per recipient. A participant
//! that falls too far behind is found by the hub's periodic scan of the cursors
//! (`Hub::scan`); the ring holds more than the backlog bound plus one scan interval, so no
//! writer that is still in the room can find its next frame overwritten.

use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, Weak};

/// One broadcast in the forms its readers need (an empty form had no reader when appended).
struct Entry {
    seq: u64,
    grpc: Bytes,
    json: Bytes,
}

/// Which form of a broadcast a reader takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    Grpc,
    Json,
}

/// A writer that found nothing to read and waits for the next append.
pub(crate) trait Parked: Send + Sync {
    /// Called once by the append that ends the wait.
    fn unpark(&self);
}

/// The ring and its head. Only the hub appends (under its lock); writers read concurrently.
pub(crate) struct RoomLog {
    ring: RwLock<Vec<Entry>>,
    /// The sequence number the next append gets: everything below it is readable.
    head: AtomicU64,
    /// Writers waiting for an append; each is woken once and must park again. Held weakly:
    /// a writer holds the log, so a strong reference here made a cycle, and a hub dropped
    /// while a writer waited (no append after it parked) leaked its log and that writer's
    /// outbox. A writer gone before the append needs no wake-up.
    parked: Mutex<Vec<Weak<dyn Parked>>>,
    /// Set by every append, cleared by the `wake_parked` that follows it: most hub operations
    /// append nothing, and those skip the parked list's lock.
    appended: AtomicBool,
    /// How many entries a reader may be behind before it is a slow consumer.
    bound: u64,
    /// The hub scans the cursors every this many appends.
    scan_every: u64,
}

/// A run of entries could not be read: the ring has moved past the reader's cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overrun;

impl RoomLog {
    /// A log for readers allowed to fall `bound` entries behind.
    pub(crate) fn new(bound: usize) -> RoomLog {
        let bound = bound.max(1) as u64;
        // Scanning every eighth of the bound keeps the scan's cost per append small (one cursor
        // load per participant every `scan_every` appends) while a slow reader is found within
        // an eighth of the bound of overflowing.
        let scan_every = (bound / 8).max(1);
        // A reader can be `bound` behind at one scan and `scan_every` more by the next; the
        // ring is larger than both together, so its next entry is still there when it reads.
        let slots = (bound + scan_every + 1).next_power_of_two() as usize;
        let ring = (0..slots)
            .map(|_| Entry {
                seq: u64::MAX,
                grpc: Bytes::new(),
                json: Bytes::new(),
            })
            .collect();
        RoomLog {
            ring: RwLock::new(ring),
            head: AtomicU64::new(0),
            parked: Mutex::new(Vec::new()),
            appended: AtomicBool::new(false),
            bound,
            scan_every,
        }
    }

    /// Where the next append goes; everything below is readable.
    pub(crate) fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// How far behind a reader may fall.
    pub(crate) fn bound(&self) -> u64 {
        self.bound
    }

    /// Appends one broadcast (called only under the hub lock, so appends are totally ordered).
    /// Returns its sequence number and whether the cursors are due for a scan. It wakes nobody:
    /// the hub calls [`RoomLog::wake_parked`] once it has released its lock.
    pub(crate) fn append(&self, grpc: Bytes, json: Bytes) -> (u64, bool) {
        let seq = self.head.load(Ordering::Relaxed);
        {
            let mut ring = self.ring.write().unwrap_or_else(|e| e.into_inner());
            let slot = seq as usize & (ring.len() - 1);
            // The old frames are dropped after the lock is released.
            let old = std::mem::replace(&mut ring[slot], Entry { seq, grpc, json });
            drop(ring);
            drop(old);
        }
        self.head.store(seq + 1, Ordering::Release);
        self.appended.store(true, Ordering::SeqCst);
        (seq, (seq + 1).is_multiple_of(self.scan_every))
    }

    /// Wakes every writer that parked for an append, if anything was appended since the last
    /// call. The hub calls it after releasing its lock: waking costs one wake-up per parked
    /// writer, up to the size of the room, and nothing that grows with the room may run under
    /// the hub lock.
    ///
    /// No wake-up is lost: the flag is set after the head moved and cleared before the list is
    /// taken, so a writer that parks after the list was taken reads the new head when it looks
    /// again (see `park`), and a later append sets the flag again.
    pub(crate) fn wake_parked(&self) {
        if !self.appended.swap(false, Ordering::SeqCst) {
            return;
        }
        let mut parked = std::mem::take(&mut *self.lock_parked());
        for p in parked.drain(..) {
            if let Some(p) = p.upgrade() {
                p.unpark();
            }
        }
        // Give the emptied list back (if nobody parked meanwhile), so that a large room does not
        // allocate a new list for every message.
        let mut list = self.lock_parked();
        if list.is_empty() {
            *list = parked;
        }
    }

    fn lock_parked(&self) -> std::sync::MutexGuard<'_, Vec<Weak<dyn Parked>>> {
        // A panic while holding it cannot leave the list inconsistent (a push or a swap).
        self.parked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a reader to be woken by the next append. The caller must check the head again
    /// afterwards: an append that came before this call does not wake it.
    pub(crate) fn park(&self, reader: Weak<dyn Parked>) {
        self.lock_parked().push(reader);
    }

    /// Hands entries `from..until` (at most `max`) in order to `visit` with their sequence
    /// numbers, under one read lock, until `visit` declines one (returns false). Returns where
    /// it stopped: the first entry not taken.
    pub(crate) fn read(
        &self,
        from: u64,
        until: u64,
        max: u64,
        form: Form,
        mut visit: impl FnMut(u64, &Bytes) -> bool,
    ) -> Result<u64, Overrun> {
        let end = until.min(from.saturating_add(max));
        if end <= from {
            // Nothing to read, or a reader whose cursor is past a head it read earlier.
            return Ok(from);
        }
        let ring = self.ring.read().unwrap_or_else(|e| e.into_inner());
        let mask = ring.len() - 1;
        for seq in from..end {
            let entry = &ring[seq as usize & mask];
            if entry.seq != seq {
                return Err(Overrun);
            }
            let frame = match form {
                Form::Grpc => &entry.grpc,
                Form::Json => &entry.json,
            };
            if !visit(seq, frame) {
                return Ok(seq);
            }
        }
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(log: &RoomLog, from: u64, until: u64, max: u64) -> Result<(u64, Vec<u8>), Overrun> {
        let mut got = Vec::new();
        let end = log.read(from, until, max, Form::Grpc, |_, b| {
            got.push(b[0]);
            true
        })?;
        Ok((end, got))
    }

    #[test]
    fn readers_see_appends_in_order_from_their_cursor() {
        let log = RoomLog::new(16);
        for i in 0..5u8 {
            log.append(Bytes::from(vec![i]), Bytes::new());
        }
        assert_eq!(log.head(), 5);
        assert_eq!(collect(&log, 2, log.head(), 100), Ok((5, vec![2, 3, 4])));
        assert_eq!(collect(&log, 0, log.head(), 2), Ok((2, vec![0, 1])));
        // A cursor past the head it was given stays where it is.
        assert_eq!(collect(&log, 5, 3, 100), Ok((5, vec![])));
    }

    #[test]
    fn a_reader_overtaken_by_the_ring_is_told_not_given_wrong_frames() {
        let log = RoomLog::new(4);
        let slots = 8; // (4 + 1 + 1).next_power_of_two()
        for i in 0..(slots + 2) as u8 {
            log.append(Bytes::from(vec![i]), Bytes::new());
        }
        assert_eq!(collect(&log, 0, log.head(), 100), Err(Overrun));
        assert_eq!(collect(&log, 2, 4, 100), Ok((4, vec![2, 3])));
    }

    #[test]
    fn scans_are_due_every_eighth_of_the_bound() {
        let log = RoomLog::new(64);
        let due: Vec<u64> = (0..32)
            .filter_map(|_| match log.append(Bytes::new(), Bytes::new()) {
                (seq, true) => Some(seq),
                _ => None,
            })
            .collect();
        assert_eq!(due, vec![7, 15, 23, 31]);
    }
}
