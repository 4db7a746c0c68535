//! The ordering contract across receivers, whichever chittyd node each is connected to: every
//! receiver of a room must see the same sequence of broadcasts (Lamport times and content), and
//! one message must carry one Lamport time everywhere.
//!
//! A cluster's nodes each stamp and deliver what a shared sequencer ordered, so a divergence
//! shows only when receivers on different nodes are compared. Comparing whole sequences would
//! mean keeping every delivery of every receiver; instead each receiver keeps a running hash of
//! its sequence and records it at a few counts ([`OrderTrace`]), and receivers are compared at
//! the counts they share ([`mismatched`]). A receiver that lost the tail of the run (cut off as a
//! slow consumer) saw a prefix of everybody else's sequence and still agrees where it counted;
//! one that saw other messages, or the same in another order or with other times, does not.
//! Lamport times are compared per message in one table that every receiver writes to
//! ([`LamportTable`]).

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Past the powers of two below it, a receiver records its hash every this many deliveries:
/// often enough that a divergence late in a run is seen by receivers whose counts differ, rare
/// enough (a few KiB per receiver in a long run) to cost nothing.
const CHECK_EVERY: u64 = 1024;

/// One receiver's sequence of broadcasts, as a running hash recorded at some counts.
#[derive(Debug, Default)]
pub struct OrderTrace {
    hash: u64,
    count: u64,
    /// (deliveries so far, hash of them): at every power of two, every `CHECK_EVERY`, and the
    /// last count (after `finish`).
    checkpoints: Vec<(u64, u64)>,
}

impl OrderTrace {
    /// Adds one delivery: its Lamport time and what identifies its content (its send time and
    /// its number in the run).
    pub fn push(&mut self, lamport: u64, sent_ns: u64, number: u64) {
        let item = lamport ^ sent_ns.rotate_left(17) ^ number.rotate_left(43);
        self.hash = (self.hash.rotate_left(5) ^ item).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.count += 1;
        if self.count.is_power_of_two() || self.count.is_multiple_of(CHECK_EVERY) {
            self.checkpoints.push((self.count, self.hash));
        }
    }

    /// Records the hash at the last count too, so that receivers that all received the same
    /// number of broadcasts are compared over all of them.
    pub fn finish(&mut self) {
        if self.count > 0 && self.checkpoints.last().map(|c| c.0) != Some(self.count) {
            self.checkpoints.push((self.count, self.hash));
        }
    }
}

/// For each trace, whether it disagrees with the others at some count they share. At each count
/// the hash most receivers have is the reference (on a tie, the one of the earliest trace, so
/// that the receivers of the first target are the reference when two targets split evenly); a
/// receiver that differs from the reference anywhere is a mismatch.
pub fn mismatched(traces: &[&OrderTrace]) -> Vec<bool> {
    // count -> hash -> (receivers with it, the first of them)
    let mut votes: HashMap<u64, HashMap<u64, (usize, usize)>> = HashMap::new();
    for (i, trace) in traces.iter().enumerate() {
        for &(count, hash) in &trace.checkpoints {
            votes
                .entry(count)
                .or_default()
                .entry(hash)
                .or_insert((0, i))
                .0 += 1;
        }
    }
    let reference: HashMap<u64, u64> = votes
        .into_iter()
        .filter_map(|(count, hashes)| {
            hashes
                .into_iter()
                .max_by(|(_, a), (_, b)| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
                .map(|(hash, _)| (count, hash))
        })
        .collect();
    traces
        .iter()
        .map(|t| {
            t.checkpoints
                .iter()
                .any(|(count, hash)| reference.get(count) != Some(hash))
        })
        .collect()
}

/// Messages per chunk of the table (128 KiB each).
const CHUNK: u64 = 1 << 14;
/// Chunks in the table: room for 2^28 messages in a run, more than any run sends; the directory
/// itself is a few hundred KiB, the chunks are allocated as the messages are numbered.
const CHUNKS: usize = 1 << 14;

/// The Lamport time each of the run's broadcasts carried at the first receiver that got it,
/// indexed by the message's number in the run, so that every other receiver can check its own.
/// Senders make room for a message (`prepare`) before sending it, so receivers never allocate
/// and never wait; a number beyond the table (a forged message) is not checked.
pub struct LamportTable {
    chunks: Box<[OnceLock<Box<[AtomicU64]>>]>,
}

impl Default for LamportTable {
    fn default() -> Self {
        LamportTable {
            chunks: (0..CHUNKS).map(|_| OnceLock::new()).collect(),
        }
    }
}

impl LamportTable {
    /// Makes room for message `number`: called by its sender before it is sent.
    pub fn prepare(&self, number: u64) {
        if let Some(chunk) = self.chunk(number) {
            chunk.get_or_init(|| (0..CHUNK).map(|_| AtomicU64::new(0)).collect());
        }
    }

    /// Whether `lamport` is the time message `number` carried at every receiver that checked it
    /// before (the first one records it). A message never prepared is taken as agreeing.
    pub fn agrees(&self, number: u64, lamport: u64) -> bool {
        let Some(slot) = self
            .chunk(number)
            .and_then(OnceLock::get)
            .and_then(|c| c.get((number % CHUNK) as usize))
        else {
            return true;
        };
        match slot.compare_exchange(0, lamport, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => true,
            Err(first) => first == lamport,
        }
    }

    fn chunk(&self, number: u64) -> Option<&OnceLock<Box<[AtomicU64]>>> {
        self.chunks.get(usize::try_from(number / CHUNK).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trace of deliveries given as (Lamport time, message number); the send time is derived
    /// from the number, as a message's content is fixed by its sender.
    fn trace(deliveries: &[(u64, u64)]) -> OrderTrace {
        let mut t = OrderTrace::default();
        for &(lamport, number) in deliveries {
            t.push(lamport, 1000 + number * 7, number);
        }
        t.finish();
        t
    }

    fn run(n: u64) -> Vec<(u64, u64)> {
        (0..n).map(|i| (10 + 2 * i, i)).collect()
    }

    #[test]
    fn receivers_of_one_sequence_agree_even_when_one_lost_the_tail() {
        let full = trace(&run(3000));
        let lossy = trace(&run(2100));
        let same = trace(&run(3000));
        assert_eq!(mismatched(&[&full, &lossy, &same]), [false, false, false]);
    }

    #[test]
    fn another_order_other_times_or_other_messages_are_mismatches() {
        let reference = run(40);
        let mut swapped = reference.clone();
        swapped.swap(20, 21);
        let mut retimed = reference.clone();
        retimed[30].0 += 1;
        let other: Vec<_> = (0..40).map(|i| (10 + 2 * i, 100 + i)).collect();
        let traces = [
            trace(&reference),
            trace(&reference),
            trace(&swapped),
            trace(&retimed),
            trace(&other),
        ];
        let refs: Vec<_> = traces.iter().collect();
        assert_eq!(mismatched(&refs), [false, false, true, true, true]);
    }

    #[test]
    fn a_late_divergence_is_seen_between_receivers_with_different_counts() {
        let reference = run(5000);
        let mut late = reference.clone();
        late.swap(3000, 3001);
        late.truncate(4500);
        let traces = [trace(&reference), trace(&reference), trace(&late)];
        let refs: Vec<_> = traces.iter().collect();
        assert_eq!(mismatched(&refs), [false, false, true]);
    }

    #[test]
    fn an_even_split_blames_the_later_receivers() {
        let a = run(10);
        let b: Vec<_> = (0..10).map(|i| (10 + 2 * i, 50 + i)).collect();
        let traces = [trace(&a), trace(&b), trace(&a), trace(&b)];
        let refs: Vec<_> = traces.iter().collect();
        assert_eq!(mismatched(&refs), [false, true, false, true]);
    }

    #[test]
    fn the_lamport_table_keeps_the_first_time_and_ignores_unknown_messages() {
        let table = LamportTable::default();
        table.prepare(5);
        table.prepare(CHUNK + 1);
        assert!(table.agrees(5, 42));
        assert!(table.agrees(5, 42));
        assert!(!table.agrees(5, 43));
        assert!(table.agrees(CHUNK + 1, 7));
        assert!(!table.agrees(CHUNK + 1, 8));
        assert!(table.agrees(3 * CHUNK, 1), "never prepared: not checked");
        assert!(table.agrees(u64::MAX, 1), "beyond the table: not checked");
    }
}
