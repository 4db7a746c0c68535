//! What the gRPC writers have handed to hyper and h2 that h2 has not yet written to a socket.
//!
//! hyper polls a response body for more as soon as the stream's HTTP/2 window allows, and a
//! client's window can be megabytes; whatever a body hands over waits in h2's queues until the
//! connection's task writes it. When connection tasks fall behind (a leave storm: ten thousand
//! leave notices for ten thousand participants whose connections are closing), that pile grew
//! to gigabytes. So each writer counts what it has handed over, and takes nothing from its
//! outbox while it is over its limit; the rest waits in the room log, under the backlog rule.
//!
//! The limit depends on all writers together. Normally a writer may have [`IN_FLIGHT`] in h2's
//! hands, enough that connection tasks write big batches (a small limit cost 40 % more CPU per
//! delivery in the 1,000-participant fan-out). Once every writer together has more than
//! [`PRESSURE`] in flight, each may have only [`IN_FLIGHT_PRESSED`] more, in runs of at most
//! [`RUN_PRESSED`]. So at most `IN_FLIGHT + MAX_RUN_BYTES` is in flight per participant, and
//! beyond `PRESSURE` in all, at most `IN_FLIGHT_PRESSED + RUN_PRESSED` more per participant.

use crate::hub::outbox::MAX_RUN_BYTES;
use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Context;

/// What one writer may have in flight normally.
pub const IN_FLIGHT: usize = 256 * 1024;

/// What all writers together may have in flight before each is held to the pressed limits.
pub const PRESSURE: usize = 8 * 1024 * 1024;

/// What one writer may have in flight while all together are over [`PRESSURE`].
pub const IN_FLIGHT_PRESSED: usize = 16 * 1024;

/// The longest run a writer takes while all together are over [`PRESSURE`].
pub const RUN_PRESSED: usize = 16 * 1024;

/// The total over all writers of one chat port.
#[derive(Debug, Default)]
pub struct AllInFlight {
    bytes: AtomicUsize,
}

/// One writer's share.
pub(super) struct InFlight {
    bytes: AtomicUsize,
    all: Arc<AllInFlight>,
    /// The writer, waiting for h2 to release a chunk.
    waker: AtomicWaker,
}

impl InFlight {
    pub(super) fn new(all: &Arc<AllInFlight>) -> Arc<InFlight> {
        Arc::new(InFlight {
            bytes: AtomicUsize::new(0),
            all: Arc::clone(all),
            waker: AtomicWaker::new(),
        })
    }

    /// How many bytes the writer may take now: `None` while it is over its limit, and then it
    /// is woken when h2 releases a chunk.
    pub(super) fn budget(&self, cx: &mut Context<'_>) -> Option<usize> {
        let pressed = self.all.bytes.load(Ordering::Relaxed) > PRESSURE;
        let (limit, run) = if pressed {
            (IN_FLIGHT_PRESSED, RUN_PRESSED)
        } else {
            (IN_FLIGHT, MAX_RUN_BYTES)
        };
        if self.bytes.load(Ordering::Acquire) < limit {
            return Some(run);
        }
        self.waker.register(cx.waker());
        // A chunk released between the look and the registration woke nobody: look again.
        (self.bytes.load(Ordering::Acquire) < limit).then_some(run)
    }

    /// Hands `data` over, counted until h2 drops it.
    pub(super) fn hand_over(self: &Arc<Self>, data: BytesMut) -> Bytes {
        let len = data.len();
        self.bytes.fetch_add(len, Ordering::AcqRel);
        self.all.bytes.fetch_add(len, Ordering::Relaxed);
        Bytes::from_owner(Chunk {
            data,
            in_flight: Arc::clone(self),
        })
    }
}

/// A chunk of frames handed to hyper. h2 drops it once every byte is written to the socket, or
/// when the stream goes; then its bytes no longer count.
struct Chunk {
    data: BytesMut,
    in_flight: Arc<InFlight>,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        let len = self.data.len();
        self.in_flight.bytes.fetch_sub(len, Ordering::AcqRel);
        self.in_flight.all.bytes.fetch_sub(len, Ordering::Relaxed);
        self.in_flight.waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn a_writer_over_its_limit_waits_until_h2_releases_a_chunk() {
        let all = Arc::new(AllInFlight::default());
        let w = InFlight::new(&all);
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(w.budget(&mut cx), Some(MAX_RUN_BYTES));
        let chunk = w.hand_over(BytesMut::from(&vec![0u8; IN_FLIGHT][..]));
        assert_eq!(w.budget(&mut cx), None);
        drop(chunk);
        assert_eq!(w.budget(&mut cx), Some(MAX_RUN_BYTES));
        assert_eq!(all.bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn over_the_pressure_every_writer_is_held_to_the_small_limit() {
        let all = Arc::new(AllInFlight::default());
        let mut cx = Context::from_waker(Waker::noop());
        let big = InFlight::new(&all);
        let small = InFlight::new(&all);
        let _small_chunk = small.hand_over(BytesMut::from(&vec![0u8; IN_FLIGHT_PRESSED][..]));
        assert_eq!(
            small.budget(&mut cx),
            Some(MAX_RUN_BYTES),
            "no pressure yet"
        );
        let _pile: Vec<Bytes> = (0..PRESSURE / IN_FLIGHT)
            .map(|_| big.hand_over(BytesMut::from(&vec![0u8; IN_FLIGHT][..])))
            .collect();
        assert_eq!(small.budget(&mut cx), None, "pressed: over the small limit");
        let fresh = InFlight::new(&all);
        assert_eq!(
            fresh.budget(&mut cx),
            Some(RUN_PRESSED),
            "pressed: a small run"
        );
    }
}
