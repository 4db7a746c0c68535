//! The thread `chitty-state`, which does every write of the state file while chittyd runs, and
//! the hub's handle on it ([`Keeper`]), whose calls never wait for the disk.
//!
//! **When a renewal cannot be written in time** (the disk is full, the file system read-only):
//! chat goes on. The hub keeps handing out Lamport times and user ids past the reservation on
//! disk; the thread tries again every [`RETRY`](super::RETRY), logs the failure at most once per
//! [`LOG_EVERY`](super::LOG_EVERY) with how many values are unsaved, and counts it
//! (`state_save_failures_total`; `state_unsaved_lamport` and `state_unsaved_user_ids` say how
//! far past the reservation the counters are). The first save that works reserves past the
//! counters again. Why not stop handing out values: every event takes a Lamport time (a join, a
//! leave, a kick, the shutdown notice), so stopping them stops the service; the values only
//! repeat if chittyd also crashes before the disk has room again; and since a renewal is asked
//! for when half a block is left, saves have been failing for half a million events before the
//! first value goes unsaved. (A peer's timestamp can move the clock far ahead at once; the
//! renewal that follows is asked for by the same operation.)

use super::file::{Saved, StateDir};
use super::reserve::{self, Counts};
use super::{LOG_EVERY, RETRY, Restored, SavedBan, StateConfig, StateError};
use crate::clock::LamportClock;
use crate::metric::Snapshot;
use crate::throttle::Throttle;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{oneshot, watch};

/// The hub's handle on the state thread. Every call is a few atomic operations or a short lock
/// of the hand-over slot (held by the thread only to take work, never during I/O), so the hub
/// may call it under its own lock.
#[derive(Clone, Default)]
pub struct Keeper {
    /// `None`: no state directory; nothing is saved.
    shared: Option<Arc<Shared>>,
}

/// Owns the state thread: [`StateWriter::finish`] makes it save the exact counters and stop.
pub struct StateWriter {
    shared: Arc<Shared>,
    /// Fired by the thread once it has saved for the last time and let go of the directory.
    done: Option<oneshot::Receiver<()>>,
}

struct Shared {
    clock: Arc<LamportClock>,
    next_id: Arc<AtomicU64>,
    block: u64,
    /// The reservation on disk: written by the thread after each save, read by the hub's check.
    reserved_lamport: AtomicU64,
    reserved_id: AtomicU64,
    /// A renewal was asked for and is not saved yet: the hub asks once, not after every event.
    renewal_asked: AtomicBool,
    /// The hand-over slot. Bounded by its shape: one renewal flag and one ban set, where a newer
    /// set replaces an unsaved older one (each is the whole set, so nothing is lost).
    work: Mutex<Work>,
    wake: Condvar,
    /// The generation of the last ban set saved, and the last failure; admin calls wait on it.
    saved: watch::Sender<BansSaved>,
    failures: AtomicU64,
    path: PathBuf,
}

#[derive(Default)]
struct Work {
    renew: bool,
    bans: Option<Vec<SavedBan>>,
    /// Ban sets handed over so far.
    generation: u64,
    stop: Option<Stop>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Save the exact counters, then stop.
    Final,
    /// Stop without saving (the server never ran): the reservation on disk covers everything.
    Abandon,
}

#[derive(Debug, Clone, Default)]
struct BansSaved {
    saved: u64,
    failed: Option<(u64, String)>,
}

fn lock(work: &Mutex<Work>) -> MutexGuard<'_, Work> {
    // The slot holds plain data, consistent after every statement: usable after a panic.
    work.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn counts(&self) -> Counts {
        Counts {
            lamport: self.clock.now(),
            next_id: self.next_id.load(Ordering::Acquire),
        }
    }

    fn reserved(&self) -> Counts {
        Counts {
            lamport: self.reserved_lamport.load(Ordering::Acquire),
            next_id: self.reserved_id.load(Ordering::Acquire),
        }
    }

    fn ask(&self, f: impl FnOnce(&mut Work)) {
        f(&mut lock(&self.work));
        self.wake.notify_one();
    }
}

impl Keeper {
    /// No state directory: every call does nothing.
    pub fn none() -> Keeper {
        Keeper { shared: None }
    }

    /// Asks for a renewal when less than half a block is left. Called by the hub after each
    /// operation (when it releases its lock).
    pub fn check(&self) {
        let Some(s) = &self.shared else { return };
        if reserve::due(s.counts(), s.reserved(), s.block)
            && !s.renewal_asked.swap(true, Ordering::AcqRel)
        {
            s.ask(|w| w.renew = true);
        }
    }

    /// Hands over the whole set of bans in force, to be saved. Called under the hub's lock, so
    /// sets arrive in the order of the changes.
    pub fn save_bans(&self, bans: Vec<SavedBan>) {
        if let Some(s) = &self.shared {
            s.ask(|w| {
                w.generation += 1;
                w.bans = Some(bans);
            });
        }
    }

    /// Waits (up to `within`) until the last ban set handed over is on disk: an operator's ban or
    /// unban is then known to survive a crash. `Err` says why it is not (yet): the thread keeps
    /// trying.
    pub async fn bans_saved(&self, within: Duration) -> Result<(), String> {
        let Some(s) = &self.shared else {
            return Ok(());
        };
        let generation = lock(&s.work).generation;
        let mut rx = s.saved.subscribe();
        let outcome = tokio::time::timeout(
            within,
            rx.wait_for(|b| {
                b.saved >= generation || b.failed.as_ref().is_some_and(|(g, _)| *g >= generation)
            }),
        )
        .await;
        match outcome {
            Ok(Ok(b)) if b.saved >= generation => Ok(()),
            Ok(Ok(b)) => Err(b.failed.clone().map(|(_, e)| e).unwrap_or_default()),
            // The thread is gone: chittyd is stopping, and its last save includes the bans.
            Ok(Err(_)) => Ok(()),
            Err(_) => Err(format!("not saved within {} s", within.as_secs_f64())),
        }
    }

    /// The state file, if there is one.
    pub fn path(&self) -> Option<&Path> {
        self.shared.as_ref().map(|s| s.path.as_path())
    }

    /// Adds the state's figures to `out` (none without a state directory).
    pub fn observe(&self, out: &mut Snapshot) {
        let Some(s) = &self.shared else { return };
        let unsaved = reserve::unsaved(s.counts(), s.reserved());
        out.counter(
            "state_save_failures_total",
            "Saves of the state file that failed (a full or read-only disk); each is tried again.",
            s.failures.load(Ordering::Relaxed),
        );
        out.gauge(
            "state_unsaved_lamport",
            "Lamport times handed out past the reservation saved in the state file (they would \
             repeat after a crash); 0 while saves work.",
            unsaved.lamport,
        );
        out.gauge(
            "state_unsaved_user_ids",
            "User ids handed out past the reservation saved in the state file; 0 while saves work.",
            unsaved.next_id,
        );
    }
}

impl StateWriter {
    /// Saves the exact counters and the bans, and waits until the thread has stopped and let go
    /// of the directory. Called last at shutdown, once nothing takes a Lamport time any more, so
    /// a restart continues right after the last one.
    pub async fn finish(mut self) {
        self.shared.ask(|w| w.stop = Some(Stop::Final));
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

impl Drop for StateWriter {
    fn drop(&mut self) {
        if self.done.is_some() {
            self.shared.ask(|w| {
                w.stop.get_or_insert(Stop::Abandon);
            });
        }
    }
}

/// See [`super::open`].
pub(super) fn start(config: &StateConfig) -> Result<(Restored, StateWriter), StateError> {
    let block = config.block.max(2);
    let (dir, saved) = StateDir::open(&config.dir)?;
    let path = dir.path().to_owned();
    let now = SystemTime::now();
    let bans: Vec<SavedBan> = saved.bans.into_iter().filter(|b| b.until > now).collect();
    let reserved = reserve::ahead(saved.counts, block);
    dir.write(&Saved {
        counts: reserved,
        bans: bans.clone(),
    })
    .map_err(|source| StateError::Write {
        path: path.clone(),
        source,
    })?;
    let clock = Arc::new(LamportClock::starting_at(saved.counts.lamport));
    let next_id = Arc::new(AtomicU64::new(saved.counts.next_id));
    let (saved_tx, _) = watch::channel(BansSaved::default());
    let shared = Arc::new(Shared {
        clock: Arc::clone(&clock),
        next_id: Arc::clone(&next_id),
        block,
        reserved_lamport: AtomicU64::new(reserved.lamport),
        reserved_id: AtomicU64::new(reserved.next_id),
        renewal_asked: AtomicBool::new(false),
        work: Mutex::new(Work::default()),
        wake: Condvar::new(),
        saved: saved_tx,
        failures: AtomicU64::new(0),
        path: path.clone(),
    });
    let (done_tx, done_rx) = oneshot::channel();
    let thread = Arc::clone(&shared);
    let kept = bans.clone();
    std::thread::Builder::new()
        .name("chitty-state".into())
        .spawn(move || {
            Thread::new(thread, dir, kept).run();
            // After `run` has dropped the directory, and with it the lock.
            let _ = done_tx.send(());
        })
        .map_err(StateError::Thread)?;
    tracing::info!(
        "state {}: Lamport time continues from {}, user ids from {}; {} bans in force",
        path.display(),
        saved.counts.lamport,
        saved.counts.next_id,
        bans.len()
    );
    let restored = Restored {
        clock,
        next_id,
        bans,
        keeper: Keeper {
            shared: Some(Arc::clone(&shared)),
        },
    };
    Ok((
        restored,
        StateWriter {
            shared,
            done: Some(done_rx),
        },
    ))
}

/// The state thread's own data.
struct Thread {
    shared: Arc<Shared>,
    dir: StateDir,
    /// The latest ban set, and the generation it was handed over with.
    bans: Vec<SavedBan>,
    generation: u64,
    /// Something is not saved yet.
    dirty: bool,
    /// After a failed save: when to try again.
    retry_at: Option<Instant>,
    throttle: Throttle,
}

impl Thread {
    fn new(shared: Arc<Shared>, dir: StateDir, bans: Vec<SavedBan>) -> Thread {
        Thread {
            shared,
            dir,
            bans,
            generation: 0,
            dirty: false,
            retry_at: None,
            throttle: Throttle::new(LOG_EVERY),
        }
    }

    fn run(mut self) {
        loop {
            let stop = self.wait();
            // Bans that have ended are dropped from the file as they end.
            let now = SystemTime::now();
            let before = self.bans.len();
            self.bans.retain(|b| b.until > now);
            self.dirty |= self.bans.len() != before;
            match stop {
                Some(Stop::Final) => return self.save_exact(),
                Some(Stop::Abandon) => return,
                None => {}
            }
            if self.dirty && self.retry_at.is_none_or(|t| t <= Instant::now()) {
                self.save();
            }
        }
    }

    /// Waits for work: a renewal, a ban set, a stop, the next ban's end, or the next try after a
    /// failure. Takes what was handed over.
    fn wait(&mut self) -> Option<Stop> {
        let mut work = lock(&self.shared.work);
        let stop = loop {
            if let Some(stop) = work.stop.take() {
                break Some(stop);
            }
            if work.renew || work.bans.is_some() {
                break None;
            }
            let (now, wall) = (Instant::now(), SystemTime::now());
            let retry = self
                .retry_at
                .filter(|_| self.dirty)
                .map(|t| t.saturating_duration_since(now));
            let expiry = self
                .bans
                .iter()
                .map(|b| b.until.duration_since(wall).unwrap_or_default())
                .min();
            let wait = match (retry, expiry) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match wait {
                Some(d) if d.is_zero() => break None,
                Some(d) => {
                    work = self
                        .shared
                        .wake
                        .wait_timeout(work, d)
                        .map_or_else(|e| e.into_inner().0, |r| r.0)
                }
                None => {
                    work = self
                        .shared
                        .wake
                        .wait(work)
                        .unwrap_or_else(|e| e.into_inner())
                }
            }
        };
        if std::mem::take(&mut work.renew) {
            self.dirty = true;
        }
        if let Some(bans) = work.bans.take() {
            self.bans = bans;
            self.generation = work.generation;
            self.dirty = true;
        }
        stop
    }

    /// Saves a reservation a block past the counters, and the bans.
    fn save(&mut self) {
        let s = Arc::clone(&self.shared);
        let target = reserve::ahead(s.counts(), s.block);
        let saved = Saved {
            counts: target,
            bans: self.bans.clone(),
        };
        match self.dir.write(&saved) {
            Ok(()) => {
                s.reserved_lamport.store(target.lamport, Ordering::Release);
                s.reserved_id.store(target.next_id, Ordering::Release);
                s.renewal_asked.store(false, Ordering::Release);
                s.saved.send_replace(BansSaved {
                    saved: self.generation,
                    failed: None,
                });
                if self.retry_at.take().is_some() {
                    tracing::info!("state {} saved again", s.path.display());
                }
                // The clock may have jumped ahead during the write (a peer's timestamp).
                self.dirty = reserve::due(s.counts(), target, s.block);
            }
            Err(e) => {
                s.failures.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                self.retry_at = Some(now + RETRY);
                let why = e.to_string();
                if let Some(held) = self.throttle.hit(now) {
                    let unsaved = reserve::unsaved(s.counts(), s.reserved());
                    tracing::error!(
                        "cannot save state {}: {why}; chat goes on, trying again every {} ms \
                         ({} Lamport times and {} user ids past the saved reservation so far, \
                         {held} failures not logged)",
                        s.path.display(),
                        RETRY.as_millis(),
                        unsaved.lamport,
                        unsaved.next_id
                    );
                }
                s.saved
                    .send_modify(|b| b.failed = Some((self.generation, why)));
            }
        }
    }

    /// The last save, at a clean stop: the exact counters, so a restart continues right after
    /// them. If it fails, the reservation on disk still covers everything handed out.
    fn save_exact(self) {
        let s = &self.shared;
        let saved = Saved {
            counts: s.counts(),
            bans: self.bans.clone(),
        };
        match self.dir.write(&saved) {
            Ok(()) => {
                s.saved.send_replace(BansSaved {
                    saved: self.generation,
                    failed: None,
                });
                tracing::info!(
                    "state {} saved at Lamport time {}",
                    s.path.display(),
                    saved.counts.lamport
                );
            }
            Err(e) => tracing::error!(
                "cannot save state {} at stop: {e}; the next start continues past the last \
                 reservation instead",
                s.path.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::file::{FILE_NAME, parse};
    use super::*;

    fn on_disk(dir: &Path) -> Saved {
        let path = dir.join(FILE_NAME);
        parse(&path, &std::fs::read(&path).unwrap()).unwrap()
    }

    /// Waits (real time: the state thread's) until the file satisfies `done`.
    async fn until_on_disk(dir: &Path, done: impl Fn(&Saved) -> bool) -> Saved {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let saved = on_disk(dir);
            if done(&saved) {
                return saved;
            }
            assert!(Instant::now() < deadline, "not saved: {saved:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn config(dir: &Path) -> StateConfig {
        StateConfig {
            dir: dir.to_owned(),
            block: 10,
        }
    }

    #[tokio::test]
    async fn the_reservation_is_renewed_at_half_a_block_and_a_crash_restarts_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let (restored, writer) = start(&config(dir.path())).unwrap();
        assert_eq!(restored.clock.now(), 0);
        assert_eq!(restored.next_id.load(Ordering::Relaxed), 1);
        assert_eq!(
            on_disk(dir.path()).counts,
            Counts {
                lamport: 10,
                next_id: 11
            },
            "the first reservation is on disk before anything is handed out"
        );
        let keeper = restored.keeper.clone();
        for _ in 0..5 {
            restored.clock.tick();
            keeper.check();
        }
        assert_eq!(
            on_disk(dir.path()).counts.lamport,
            10,
            "half a block is left"
        );
        restored.clock.tick();
        keeper.check();
        let saved = until_on_disk(dir.path(), |s| s.counts.lamport > 10).await;
        assert_eq!(saved.counts.lamport, 16, "a block past the clock at 6");
        let mut figures = Snapshot::default();
        keeper.observe(&mut figures);
        assert_eq!(figures.get("state_unsaved_lamport"), Some(0));
        assert_eq!(figures.get("state_save_failures_total"), Some(0));

        // A crash: the writer goes without its final save; the next start is past the
        // reservation, so past every time handed out.
        restored.clock.tick();
        drop(writer);
        let (restored, writer) = loop {
            match start(&config(dir.path())) {
                Ok(started) => break started,
                // The old thread still holds the directory for a moment.
                Err(StateError::InUse(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(restored.clock.now(), 16);
        assert_eq!(restored.next_id.load(Ordering::Relaxed), 11);
        assert_eq!(restored.clock.tick(), 17);
        restored.next_id.fetch_add(1, Ordering::Relaxed);

        // A clean stop saves the exact counters: the next start continues right after them.
        writer.finish().await;
        assert_eq!(
            on_disk(dir.path()).counts,
            Counts {
                lamport: 17,
                next_id: 12
            }
        );
        let (restored, writer) = start(&config(dir.path())).unwrap();
        assert_eq!(restored.clock.tick(), 18);
        writer.finish().await;
    }

    #[tokio::test]
    async fn bans_are_saved_when_handed_over_and_dropped_from_the_file_when_they_end() {
        let dir = tempfile::tempdir().unwrap();
        let (restored, writer) = start(&config(dir.path())).unwrap();
        let now = SystemTime::now();
        let ban = |name: &str, for_ms: u64| SavedBan {
            name: name.into(),
            until: now + Duration::from_millis(for_ms),
            since: now,
            reason: "test".into(),
            actor: "uid=0".into(),
        };
        let keeper = restored.keeper;
        keeper.save_bans(vec![ban("bob", 3_600_000), ban("eve", 300)]);
        keeper
            .bans_saved(Duration::from_secs(10))
            .await
            .expect("saved");
        let names = |s: &Saved| s.bans.iter().map(|b| b.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&on_disk(dir.path())), ["bob", "eve"]);
        // Nothing is handed over when eve's ban ends: the thread drops it by itself.
        let saved = until_on_disk(dir.path(), |s| s.bans.len() == 1).await;
        assert_eq!(names(&saved), ["bob"]);
        keeper.save_bans(Vec::new());
        keeper.bans_saved(Duration::from_secs(10)).await.unwrap();
        assert!(on_disk(dir.path()).bans.is_empty());
        keeper.save_bans(vec![ban("carol", 3_600_000)]);
        writer.finish().await;
        assert_eq!(names(&on_disk(dir.path())), ["carol"], "saved at stop");
        let (restored, writer) = start(&config(dir.path())).unwrap();
        assert_eq!(restored.bans.len(), 1);
        writer.finish().await;
    }

    #[tokio::test]
    async fn without_a_state_directory_nothing_is_saved_or_waited_for() {
        let keeper = Keeper::none();
        keeper.check();
        keeper.save_bans(Vec::new());
        assert_eq!(keeper.bans_saved(Duration::ZERO).await, Ok(()));
        let mut figures = Snapshot::default();
        keeper.observe(&mut figures);
        assert_eq!(figures.get("state_unsaved_lamport"), None);
    }
}
