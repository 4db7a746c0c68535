//! The outbox's park and wake logic under real threads: one thread plays the hub (appending and
//! pushing under one lock, waking parked writers once it has released it), several threads play
//! writers (taking frames, parking when there are none). Every writer must get every frame in
//! the hub's order, and no wake-up may be lost: every few appends the hub waits until every
//! writer has caught up, which a writer asleep through a lost wake-up would not do in time.

use super::log::{Form, RoomLog};
use super::outbox::{Ending, MAX_RUN_BYTES, Taken, outbox};
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

/// Wakes a writer thread.
struct ThreadWaker(thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

const WRITERS: usize = 6;
const BROADCASTS: usize = 20_000;
/// The hub waits for every writer to catch up every this many appends.
const ROUND: usize = 50;
/// How long a caught-up writer may take to be woken and read: far longer than a wake-up takes,
/// far shorter than a writer sleeps when nobody wakes it.
const CATCH_UP: Duration = Duration::from_secs(1);
const SLEEP: Duration = Duration::from_secs(10);

/// One private frame per round, for one writer: the others must be woken by the appends.
fn private_for(i: usize) -> Option<usize> {
    (i % ROUND == ROUND / 2).then_some(i / ROUND % WRITERS)
}

/// What writer `w` must receive: every broadcast, and after broadcast `i` the private frame the
/// hub pushed right after appending it, if it was for `w`.
fn expected(w: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..BROADCASTS {
        out.push(format!("b{i}"));
        if private_for(i) == Some(w) {
            out.push(format!("p{i}"));
        }
    }
    out
}

#[test]
fn writers_on_many_threads_get_every_frame_in_order_and_no_wake_up_is_lost() {
    let log = Arc::new(RoomLog::new(1 << 16));
    let hub_lock = Mutex::new(());
    let mut outboxes = Vec::new();
    let mut writers = Vec::new();
    let mut progress = Vec::new();
    for _ in 0..WRITERS {
        let (tx, mut rx) = outbox(&log, 1 << 16, Form::Grpc);
        tx.enter_room();
        outboxes.push(tx);
        let seen = Arc::new(AtomicUsize::new(0));
        progress.push(Arc::clone(&seen));
        writers.push(thread::spawn(move || {
            let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
            let mut cx = Context::from_waker(&waker);
            let mut got: Vec<String> = Vec::new();
            loop {
                let taken = rx.poll_take(&mut cx, MAX_RUN_BYTES, |f| {
                    if f.starts_with(b"b") {
                        seen.fetch_add(1, Ordering::SeqCst);
                    }
                    got.push(String::from_utf8_lossy(f).into_owned());
                });
                match taken {
                    Poll::Ready(Taken::Frames) => {}
                    Poll::Ready(Taken::Ended(ending)) => return (got, ending),
                    Poll::Pending => thread::park_timeout(SLEEP),
                }
            }
        }));
    }
    let mut stalled_at = None;
    'rounds: for i in 0..BROADCASTS {
        {
            let _hub = hub_lock.lock().unwrap();
            log.append(Bytes::from(format!("b{i}")), Bytes::new());
            if let Some(w) = private_for(i) {
                outboxes[w].push(Bytes::from(format!("p{i}"))).unwrap();
            }
        }
        log.wake_parked();
        if (i + 1) % ROUND == 0 {
            let since = Instant::now();
            while progress.iter().any(|p| p.load(Ordering::SeqCst) <= i) {
                if since.elapsed() > CATCH_UP {
                    stalled_at = Some(i);
                    break 'rounds;
                }
                thread::yield_now();
            }
        }
    }
    {
        let _hub = hub_lock.lock().unwrap();
        for tx in &outboxes {
            tx.end(Ending::Clean);
        }
    }
    let results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    assert_eq!(
        stalled_at, None,
        "a writer slept through an append (a lost wake-up)"
    );
    for (w, (got, ending)) in results.into_iter().enumerate() {
        assert_eq!(ending, Ending::Clean);
        assert_eq!(got.len(), expected(w).len(), "writer {w}");
        assert!(got == expected(w), "writer {w} got frames out of order");
    }
}
