//! A participant's outbox: the bounded queue of already-encoded frames between the hub, which
//! fills it while it holds the hub lock, and the participant's writer, which drains it.
//!
//! The hub never waits on an outbox: `push` either queues the frame or reports that the queue is
//! full, and the hub decides what that means (see `Hub::deliver`). The writer takes everything
//! queued in one swap, so a burst goes out in as few writes as the transport allows.

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

/// Why a session's stream ends; the transport turns it into a gRPC status or a WebSocket close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// A normal end: the participant left, or the server shut down. Queued frames go out first.
    Clean,
    /// The session was cut off; the reason is shown to the participant. Queued frames are dropped.
    Error(crate::hub::SessionError),
}

/// A drained batch holding room for more frames than this is freed rather than reused.
const SHRINK_ABOVE: usize = 64;

/// The outbox is full: the participant is not reading fast enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

struct State {
    queue: VecDeque<Bytes>,
    ending: Option<Ending>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer when a frame or the ending arrives.
    waker: AtomicWaker,
    capacity: usize,
}

/// The hub's end: pushes frames and ends the session.
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

/// The writer's end: drains frames in batches.
pub struct OutboxReader {
    shared: Arc<Shared>,
}

/// A new outbox holding at most `capacity` frames, and its reader.
pub fn outbox(capacity: usize) -> (Outbox, OutboxReader) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            ending: None,
        }),
        waker: AtomicWaker::new(),
        capacity: capacity.max(1),
    });
    (
        Outbox {
            shared: Arc::clone(&shared),
        },
        OutboxReader { shared },
    )
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (every critical
        // section is a single push, swap or assignment), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Outbox {
    /// Queues a frame, or reports `Full` without queueing it. Frames pushed after the session
    /// ended are dropped: nobody will read them.
    pub fn push(&self, frame: Bytes) -> Result<(), Full> {
        let was_empty = {
            let mut state = self.shared.lock();
            if state.ending.is_some() {
                return Ok(());
            }
            if state.queue.len() >= self.shared.capacity {
                return Err(Full);
            }
            state.queue.push_back(frame);
            state.queue.len() == 1
        };
        // Only the first frame after the writer emptied the queue needs a wake-up: a writer that
        // took frames always comes back for more before it parks, and it parks (registers its
        // waker) only after seeing the queue empty under the lock.
        if was_empty {
            self.shared.waker.wake();
        }
        Ok(())
    }

    /// Ends the session. A clean ending lets queued frames go out first; an error drops them, so
    /// a cut-off participant's backlog is freed at once. The first ending wins.
    pub fn end(&self, ending: Ending) {
        {
            let mut state = self.shared.lock();
            if state.ending.is_some() {
                return;
            }
            if matches!(ending, Ending::Error(_)) {
                state.queue = VecDeque::new();
            }
            state.ending = Some(ending);
        }
        self.shared.waker.wake();
    }

    /// Frames queued and not yet taken by the writer.
    pub fn backlog(&self) -> usize {
        self.shared.lock().queue.len()
    }
}

/// What the writer gets from `poll_take`.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// At least one frame was appended to the caller's batch.
    Frames,
    /// Nothing is queued and the session has ended.
    Ended(Ending),
}

impl OutboxReader {
    /// Moves every queued frame into `batch` (which the caller has emptied) in one swap, or
    /// returns the ending once the queue is drained, or registers to be woken.
    pub fn poll_take(&mut self, cx: &mut Context<'_>, batch: &mut VecDeque<Bytes>) -> Poll<Taken> {
        // A burst (a join storm, say) grows the queues; an idle participant should not keep
        // that memory, so an empty batch that grew large is given back before the swap.
        if batch.capacity() > SHRINK_ABOVE {
            *batch = VecDeque::new();
        }
        let mut state = self.shared.lock();
        if !state.queue.is_empty() {
            std::mem::swap(&mut state.queue, batch);
            return Poll::Ready(Taken::Frames);
        }
        if let Some(ending) = &state.ending {
            return Poll::Ready(Taken::Ended(ending.clone()));
        }
        // Registered while the lock is held: a push after this point sees the new waker.
        self.shared.waker.register(cx.waker());
        Poll::Pending
    }

    /// The same as `poll_take`, as a future, for writers that are async functions.
    pub async fn take(&mut self, batch: &mut VecDeque<Bytes>) -> Taken {
        std::future::poll_fn(|cx| self.poll_take(cx, batch)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::SessionError;

    #[tokio::test]
    async fn frames_come_out_in_order_in_one_batch() {
        let (tx, mut rx) = outbox(8);
        for i in 0..5u8 {
            tx.push(Bytes::from(vec![i])).unwrap();
        }
        let mut batch = VecDeque::new();
        assert_eq!(rx.take(&mut batch).await, Taken::Frames);
        let got: Vec<u8> = batch.iter().map(|b| b[0]).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        assert_eq!(tx.backlog(), 0);
    }

    #[test]
    fn a_full_outbox_refuses_and_keeps_what_it_has() {
        let (tx, _rx) = outbox(2);
        tx.push(Bytes::from_static(b"a")).unwrap();
        tx.push(Bytes::from_static(b"b")).unwrap();
        assert_eq!(tx.push(Bytes::from_static(b"c")), Err(Full));
        assert_eq!(tx.backlog(), 2);
    }

    #[tokio::test]
    async fn clean_end_flushes_first_error_end_drops() {
        let (tx, mut rx) = outbox(4);
        tx.push(Bytes::from_static(b"a")).unwrap();
        tx.end(Ending::Clean);
        tx.push(Bytes::from_static(b"late")).unwrap();
        let mut batch = VecDeque::new();
        assert_eq!(rx.take(&mut batch).await, Taken::Frames);
        assert_eq!(batch.len(), 1);
        batch.clear();
        assert_eq!(rx.take(&mut batch).await, Taken::Ended(Ending::Clean));

        let (tx, mut rx) = outbox(4);
        tx.push(Bytes::from_static(b"a")).unwrap();
        tx.end(Ending::Error(SessionError::SlowConsumer(4)));
        tx.end(Ending::Clean);
        assert_eq!(tx.backlog(), 0);
        assert_eq!(
            rx.take(&mut batch).await,
            Taken::Ended(Ending::Error(SessionError::SlowConsumer(4)))
        );
    }

    #[tokio::test]
    async fn a_push_wakes_a_waiting_writer() {
        let (tx, mut rx) = outbox(4);
        let writer = tokio::spawn(async move {
            let mut batch = VecDeque::new();
            rx.take(&mut batch).await;
            batch
        });
        tokio::task::yield_now().await;
        tx.push(Bytes::from_static(b"x")).unwrap();
        let batch = writer.await.unwrap();
        assert_eq!(batch.len(), 1);
    }
}
