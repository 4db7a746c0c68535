//! A participant's outbox: everything on its way to one participant, between the hub, which
//! fills it while it holds the hub lock, and the participant's writer, which drains it.
//!
//! Two sources feed it. Broadcasts are not copied into it at all: they sit once in the room log
//! ([`super::log`]) and the writer reads them from there with its own cursor. Frames for this
//! participant alone (direct messages, refusals, the welcome) go into a small private queue,
//! each tagged with the log position it was sequenced at, and the writer merges the two by that
//! tag, so the participant sees exactly the order the hub decided.
//!
//! The hub never waits on an outbox: `push` either queues the frame or reports that the backlog
//! (private frames plus broadcasts not yet read) is full, and the hub decides what that means
//! (see `Hub::scan`).

use super::SessionError;
use super::log::{Form, Overrun, Parked, RoomLog};
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

/// Why a session's stream ends; the transport turns it into a gRPC status or a WebSocket close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// A normal end: the participant left, or the server shut down. Queued frames go out first.
    Clean,
    /// The session was cut off; the reason is shown to the participant. Queued frames are dropped.
    Error(SessionError),
}

/// The backlog is full: the participant is not reading fast enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// At most this many broadcasts are taken per call, so one writer's turn stays short.
const MAX_RUN: u64 = 512;

/// The usual byte budget of one `poll_take`: a call stops taking frames once it has handed out
/// this many bytes (at a frame boundary, and always after at least one frame), so what a writer
/// holds beyond its outbox, a run taken but not yet written, stays this small, and the rest
/// waits in the room log (shared by every participant, under the backlog rule). A run this size
/// still makes one large write; a quarter of it cost 14 % more CPU per WebSocket delivery.
pub const MAX_RUN_BYTES: usize = 64 * 1024;

/// A drained private queue holding room for more frames than this is freed rather than reused.
const SHRINK_ABOVE: usize = 64;

struct State {
    /// Private frames, each with the log position it goes before.
    queue: VecDeque<(u64, Bytes)>,
    ending: Option<Ending>,
    /// The first log entry this session reads, once it is in the room.
    room_from: Option<u64>,
    /// The log head when a session in the room ended: a clean ending reads up to here.
    room_until: Option<u64>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer when a frame, the room or the ending arrives.
    waker: AtomicWaker,
    capacity: usize,
    log: Arc<RoomLog>,
    form: Form,
    /// The writer's position in the log, published for the hub's scan and the backlog figure.
    cursor: AtomicU64,
    /// Private frames queued, readable without the lock.
    queued: AtomicUsize,
    /// Whether the writer is registered with the log for the next append.
    parked: AtomicBool,
}

impl Parked for Shared {
    fn unpark(&self) {
        self.parked.store(false, Ordering::Release);
        self.waker.wake();
    }
}

/// The hub's end: pushes private frames, puts the session in the room, ends it.
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

/// The writer's end: drains broadcasts and private frames in their one order.
pub struct OutboxReader {
    shared: Arc<Shared>,
    /// The next log entry to read.
    cursor: u64,
    room_from: Option<u64>,
    room_until: Option<u64>,
    /// Private frames taken from the queue and waiting for the log to reach their position.
    held: VecDeque<(u64, Bytes)>,
    ending: Option<Ending>,
}

/// A new outbox whose backlog may hold `capacity` frames, reading broadcasts from `log` in the
/// form of `transport`.
pub(crate) fn outbox(log: &Arc<RoomLog>, capacity: usize, form: Form) -> (Outbox, OutboxReader) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            ending: None,
            room_from: None,
            room_until: None,
        }),
        waker: AtomicWaker::new(),
        capacity: capacity.max(1),
        log: Arc::clone(log),
        form,
        cursor: AtomicU64::new(0),
        queued: AtomicUsize::new(0),
        parked: AtomicBool::new(false),
    });
    (
        Outbox {
            shared: Arc::clone(&shared),
        },
        OutboxReader {
            shared,
            cursor: 0,
            room_from: None,
            room_until: None,
            held: VecDeque::new(),
            ending: None,
        },
    )
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state inconsistent (every critical
        // section is a single push, swap or assignment), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Broadcasts appended and not yet read, if the session is in the room.
    fn unread(&self, state: &State, head: u64) -> u64 {
        match state.room_from {
            Some(_) => head.saturating_sub(self.cursor.load(Ordering::Acquire)),
            None => 0,
        }
    }
}

impl Outbox {
    /// Queues a private frame at the current log position, or reports `Full` without queueing
    /// it. Frames pushed after the session ended are dropped: nobody will read them. Called
    /// under the hub lock, so the log head cannot move meanwhile.
    pub fn push(&self, frame: Bytes) -> Result<(), Full> {
        let was_empty = {
            let mut state = self.shared.lock();
            if state.ending.is_some() {
                return Ok(());
            }
            let head = self.shared.log.head();
            let backlog = state.queue.len() as u64 + self.shared.unread(&state, head);
            if backlog >= self.shared.capacity as u64 {
                return Err(Full);
            }
            state.queue.push_back((head, frame));
            self.shared.queued.fetch_add(1, Ordering::Relaxed);
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

    /// Puts the session in the room: it reads every broadcast appended from now on. Called
    /// under the hub lock, before the session's own join is appended.
    pub(crate) fn enter_room(&self) -> u64 {
        let from = self.shared.log.head();
        {
            let mut state = self.shared.lock();
            if state.room_from.is_some() || state.ending.is_some() {
                return from;
            }
            self.shared.cursor.store(from, Ordering::Release);
            state.room_from = Some(from);
        }
        self.shared.waker.wake();
        from
    }

    /// Ends the session. A clean ending lets queued frames (and broadcasts appended so far) go
    /// out first; an error drops them, so a cut-off participant's backlog is freed at once. The
    /// first ending wins.
    pub fn end(&self, ending: Ending) {
        {
            let mut state = self.shared.lock();
            if state.ending.is_some() {
                return;
            }
            if matches!(ending, Ending::Error(_)) {
                state.queue = VecDeque::new();
                self.shared.queued.store(0, Ordering::Relaxed);
            }
            if state.room_from.is_some() {
                state.room_until = Some(self.shared.log.head());
            }
            state.ending = Some(ending);
        }
        self.shared.waker.wake();
    }

    /// Frames waiting for the participant: private ones plus broadcasts it has not read.
    pub fn backlog(&self) -> usize {
        let state = self.shared.lock();
        let head = self.shared.log.head();
        state.queue.len() + self.shared.unread(&state, head) as usize
    }

    /// The backlog as the hub's scan sees it, without taking the outbox's lock (the session is
    /// known to be in the room).
    pub(crate) fn behind(&self, head: u64) -> u64 {
        head.saturating_sub(self.shared.cursor.load(Ordering::Acquire))
            + self.shared.queued.load(Ordering::Relaxed) as u64
    }

    /// The most frames the backlog may hold.
    pub(crate) fn capacity(&self) -> u64 {
        self.shared.capacity as u64
    }
}

/// What one call of `poll_take` hands out, and when it has handed out enough.
struct Run<F> {
    emit: F,
    frames: usize,
    bytes: usize,
    budget: usize,
}

impl<F: FnMut(&Bytes)> Run<F> {
    fn put(&mut self, frame: &Bytes) {
        self.frames += 1;
        self.bytes += frame.len();
        (self.emit)(frame);
    }

    /// The byte budget is spent (never before the first frame).
    fn full(&self) -> bool {
        self.bytes >= self.budget
    }

    /// Emits the held private frames sequenced before log position `upto`, while the budget
    /// lasts; the rest stay held, still ahead of that position.
    fn held(&mut self, held: &mut VecDeque<(u64, Bytes)>, upto: u64) {
        while !self.full() && held.front().is_some_and(|(tag, _)| *tag <= upto) {
            if let Some((_, frame)) = held.pop_front() {
                self.put(&frame);
            }
        }
    }
}

/// What the writer gets from `poll_take`.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// At least one frame was handed to the caller.
    Frames,
    /// Nothing is left and the session has ended.
    Ended(Ending),
}

impl OutboxReader {
    /// Hands the frames that are ready, in the participant's order, to `emit` (up to
    /// [`MAX_RUN`] broadcasts, and frames until `max_bytes` are handed out, at least one), or
    /// returns the ending once everything is out, or registers to be woken.
    pub fn poll_take(
        &mut self,
        cx: &mut Context<'_>,
        max_bytes: usize,
        mut emit: impl FnMut(&Bytes),
    ) -> Poll<Taken> {
        loop {
            // The log's head is read before the private queue is taken: a private frame taken
            // below was either queued before this head (its tag is at most the head) or after
            // it (its tag is at least the head, and it waits in `held` for the log to get
            // there). Either way no broadcast is emitted ahead of a private frame that the hub
            // sequenced before it.
            let head = self.shared.log.head();
            self.sync();
            if let Some(Ending::Error(e)) = &self.ending {
                self.held.clear();
                return Poll::Ready(Taken::Ended(Ending::Error(e.clone())));
            }
            let mut run = Run {
                emit: &mut emit,
                frames: 0,
                bytes: 0,
                budget: max_bytes,
            };
            let held = &mut self.held;
            if self.room_from.is_some() {
                let limit = self.room_until.map_or(head, |until| until.min(head));
                let shared = &self.shared;
                let read =
                    shared
                        .log
                        .read(self.cursor, limit, MAX_RUN, shared.form, |seq, frame| {
                            run.held(held, seq);
                            if run.full() {
                                return false;
                            }
                            run.put(frame);
                            true
                        });
                match read {
                    Ok(end) => {
                        self.cursor = end;
                        self.shared.cursor.store(end, Ordering::Release);
                    }
                    Err(Overrun) => {
                        // The hub's scan cuts off a reader before the ring can overtake it, so
                        // only a session that already left (and is no longer scanned) gets here.
                        self.held.clear();
                        let e = SessionError::SlowConsumer(self.shared.log.bound() as usize);
                        self.ending = Some(Ending::Error(e.clone()));
                        return Poll::Ready(Taken::Ended(Ending::Error(e)));
                    }
                }
                run.held(&mut self.held, self.cursor);
            } else {
                run.held(held, u64::MAX);
            }
            if run.frames > 0 {
                return Poll::Ready(Taken::Frames);
            }
            let room_done = self.room_until.is_none_or(|until| self.cursor >= until);
            if let Some(ending) = &self.ending
                && self.held.is_empty()
                && room_done
            {
                return Poll::Ready(Taken::Ended(ending.clone()));
            }
            // Nothing to do: register for a wake-up, then look once more, since what arrived
            // before the registration woke nobody.
            self.shared.waker.register(cx.waker());
            if self.room_from.is_some()
                && self.room_until.is_none()
                && !self.shared.parked.swap(true, Ordering::AcqRel)
            {
                let weak: std::sync::Weak<Shared> = Arc::downgrade(&self.shared);
                self.shared.log.park(weak);
            }
            let appended = self.room_from.is_some() && self.shared.log.head() != head;
            if !appended && !self.changed() {
                return Poll::Pending;
            }
        }
    }

    /// The same as `poll_take` with the usual run, as a future, for writers that are async
    /// functions.
    pub async fn take(&mut self, emit: impl FnMut(&Bytes)) -> Taken {
        let mut emit = emit;
        std::future::poll_fn(|cx| self.poll_take(cx, MAX_RUN_BYTES, &mut emit)).await
    }

    /// Takes the private queue and what the hub has said about the room and the ending.
    fn sync(&mut self) {
        let mut state = self.shared.lock();
        if self.held.is_empty() && self.held.capacity() > SHRINK_ABOVE {
            self.held = VecDeque::new();
        }
        if !state.queue.is_empty() {
            let taken = state.queue.len();
            if self.held.is_empty() {
                std::mem::swap(&mut state.queue, &mut self.held);
            } else {
                self.held.extend(state.queue.drain(..));
            }
            self.shared.queued.fetch_sub(taken, Ordering::Relaxed);
        }
        if self.room_from.is_none()
            && let Some(from) = state.room_from
        {
            self.room_from = Some(from);
            self.cursor = from;
        }
        self.room_until = state.room_until;
        if self.ending.is_none() {
            self.ending.clone_from(&state.ending);
        }
    }

    /// Whether the hub has queued or said anything since the last `sync`.
    fn changed(&self) -> bool {
        let state = self.shared.lock();
        !state.queue.is_empty()
            || (self.room_from.is_none() && state.room_from.is_some())
            || (self.ending.is_none() && state.ending.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn setup(capacity: usize) -> (Arc<RoomLog>, Outbox, OutboxReader) {
        let log = Arc::new(RoomLog::new(capacity));
        let (tx, rx) = outbox(&log, capacity, Form::Grpc);
        (log, tx, rx)
    }

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    /// Everything `poll_take` hands out right now, and what it returned last.
    fn take_all(rx: &mut OutboxReader) -> (Vec<String>, Poll<Taken>) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut got = Vec::new();
        loop {
            let polled = rx.poll_take(&mut cx, MAX_RUN_BYTES, |f| {
                got.push(String::from_utf8_lossy(f).into_owned());
            });
            if polled != Poll::Ready(Taken::Frames) {
                return (got, polled);
            }
        }
    }

    #[test]
    fn broadcasts_and_private_frames_come_out_in_the_hubs_order() {
        let (log, tx, mut rx) = setup(16);
        log.append(b("before the room"), Bytes::new());
        tx.push(b("p0")).unwrap();
        tx.enter_room();
        log.append(b("b1"), Bytes::new());
        tx.push(b("p1")).unwrap();
        log.append(b("b2"), Bytes::new());
        log.append(b("b3"), Bytes::new());
        tx.push(b("p2")).unwrap();
        let (got, last) = take_all(&mut rx);
        assert_eq!(got, ["p0", "b1", "p1", "b2", "b3", "p2"]);
        assert_eq!(last, Poll::Pending);
        assert_eq!(tx.backlog(), 0);
    }

    /// A writer parked for the next append, then dropped with its outbox before any came:
    /// nothing holds the log but its owner (the parked list once made a cycle with it).
    #[test]
    fn a_writer_dropped_while_parked_frees_the_log() {
        let (log, tx, mut rx) = setup(16);
        tx.enter_room();
        assert_eq!(take_all(&mut rx), (vec![], Poll::Pending));
        drop((tx, rx));
        assert_eq!(Arc::strong_count(&log), 1);
        log.append(b("after"), Bytes::new());
        log.wake_parked();
    }

    #[test]
    fn a_session_reads_the_room_only_from_its_entry() {
        let (log, tx, mut rx) = setup(16);
        assert_eq!(take_all(&mut rx), (vec![], Poll::Pending));
        log.append(b("before"), Bytes::new());
        assert_eq!(take_all(&mut rx), (vec![], Poll::Pending));
        tx.enter_room();
        assert_eq!(take_all(&mut rx), (vec![], Poll::Pending));
        log.append(b("own join"), Bytes::new());
        assert_eq!(take_all(&mut rx).0, ["own join"]);
    }

    #[test]
    fn the_backlog_counts_unread_broadcasts_and_refuses_past_the_bound() {
        let (log, tx, mut rx) = setup(3);
        tx.enter_room();
        log.append(b("b1"), Bytes::new());
        log.append(b("b2"), Bytes::new());
        tx.push(b("p1")).unwrap();
        assert_eq!(tx.backlog(), 3);
        assert_eq!(tx.behind(log.head()), 3);
        assert_eq!(tx.push(b("p2")), Err(Full));
        assert_eq!(take_all(&mut rx).0, ["b1", "b2", "p1"]);
        assert_eq!(tx.behind(log.head()), 0);
        tx.push(b("p2")).unwrap();
    }

    #[test]
    fn clean_end_flushes_what_came_before_it_and_an_error_drops_everything() {
        let (log, tx, mut rx) = setup(8);
        tx.enter_room();
        log.append(b("b1"), Bytes::new());
        tx.push(b("p1")).unwrap();
        tx.end(Ending::Clean);
        log.append(b("after the end"), Bytes::new());
        tx.push(b("late")).unwrap();
        let (got, last) = take_all(&mut rx);
        assert_eq!(got, ["b1", "p1"]);
        assert_eq!(last, Poll::Ready(Taken::Ended(Ending::Clean)));

        let (log, tx, mut rx) = setup(8);
        tx.enter_room();
        log.append(b("b1"), Bytes::new());
        tx.push(b("p1")).unwrap();
        tx.end(Ending::Error(SessionError::SlowConsumer(8)));
        tx.end(Ending::Clean);
        assert_eq!(
            take_all(&mut rx),
            (
                vec![],
                Poll::Ready(Taken::Ended(Ending::Error(SessionError::SlowConsumer(8))))
            )
        );
    }

    #[test]
    fn a_reader_overtaken_by_the_ring_ends_as_a_slow_consumer() {
        let (log, tx, mut rx) = setup(2);
        tx.enter_room();
        for _ in 0..16 {
            log.append(b("x"), Bytes::new());
        }
        assert_eq!(
            take_all(&mut rx),
            (
                vec![],
                Poll::Ready(Taken::Ended(Ending::Error(SessionError::SlowConsumer(2))))
            )
        );
    }

    #[tokio::test]
    async fn appends_and_pushes_wake_a_waiting_writer() {
        let (log, tx, mut rx) = setup(8);
        tx.enter_room();
        let writer = tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..2 {
                rx.take(|f| got.push(f.clone())).await;
            }
            got
        });
        tokio::task::yield_now().await;
        log.append(b("b1"), Bytes::new());
        // As the hub does once it has released its lock.
        log.wake_parked();
        tokio::task::yield_now().await;
        tx.push(b("p1")).unwrap();
        let got = writer.await.unwrap();
        assert_eq!(got, [b("b1"), b("p1")]);
    }
}
