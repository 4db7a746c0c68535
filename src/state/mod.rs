//! What chittyd keeps across restarts and crashes: the Lamport clock, the next user id and the
//! bans, in one file (`state.json`) in the state directory (`--state-dir`).
//!
//! The hub hands out Lamport times and user ids from atomic counters and never waits for the
//! disk. The file holds a *reservation* instead: how far the counters may go. At start chittyd
//! reads the file, starts its counters at the reserved values (past anything the last run can
//! have handed out, however it ended), and writes a new reservation a block (a million) further
//! before it serves anyone. While it runs, the thread `chitty-state` renews the reservation when
//! half of it is used, and saves the bans whenever they change. The hub's part is a check after
//! each operation (a few atomic loads) and, once per half block or per ban change, a wake-up of
//! that thread; it never touches a file. Every write is atomic: a temporary file, fsync, rename
//! over `state.json`, fsync of the directory, so a crash leaves the old file or the new one,
//! never a mix. At a clean stop the exact counters are saved, so a restart continues right after
//! the last Lamport time handed out.
//!
//! The module imports nothing from the hub or the server: it knows counters and bans as plain
//! data. It sits below the hub, like `audit`.

mod file;
mod keeper;
pub mod reserve;

pub use file::{FILE_NAME, FORMAT};
pub use keeper::{Keeper, StateWriter};

use crate::clock::LamportClock;
use reserve::Counts;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};
use thiserror::Error;

/// How many Lamport times and user ids are reserved at once; a renewal is due when half of
/// either is used.
pub const DEFAULT_BLOCK: u64 = 1_000_000;

/// A failing save is logged at most once per this period, and tried again every `RETRY`.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// How soon a failed save is tried again.
pub const RETRY: Duration = Duration::from_millis(500);

/// Where the state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    /// The state directory (created if missing).
    pub dir: PathBuf,
    /// Values reserved at once (at least 2); [`DEFAULT_BLOCK`] but in tests.
    pub block: u64,
}

impl StateConfig {
    /// The state in `dir`, with the default block.
    pub fn new(dir: impl Into<PathBuf>) -> StateConfig {
        StateConfig {
            dir: dir.into(),
            block: DEFAULT_BLOCK,
        }
    }
}

/// Why the state cannot be used. Every one of them stops chittyd at start: starting again at 0
/// would repeat Lamport times and user ids and forget the bans.
#[derive(Debug, Error)]
pub enum StateError {
    /// The directory cannot be created or opened.
    #[error("cannot use state directory {dir}: {source}")]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Another chittyd holds the directory's lock.
    #[error(
        "state directory {0} is in use by another chittyd; give each chittyd its own \
         --state-dir"
    )]
    InUse(PathBuf),
    /// The file exists but cannot be read.
    #[error("cannot read state file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is not a state file this chittyd (or an older one) wrote.
    #[error(
        "state file {path} is corrupt: {why}. chittyd does not start over it (its Lamport times \
         and user ids would repeat): restore it from a backup, or move it away to start afresh \
         at Lamport time 0 without bans"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The file was written by a newer chittyd, in a format this one does not know.
    #[error(
        "state file {path} was written by a newer chittyd (format {found}; this chittyd reads \
         format {FORMAT}): run that version or a later one"
    )]
    Newer {
        /// The file.
        path: PathBuf,
        /// The format it says it has.
        found: u64,
    },
    /// The first reservation cannot be written (a read-only or full file system).
    #[error("cannot write state file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The thread that saves the state cannot be started.
    #[error("cannot start the state thread: {0}")]
    Thread(io::Error),
}

impl StateError {
    /// Whether the configuration is at fault, so that starting again is pointless until it is
    /// fixed: a corrupt file or one from a newer chittyd (someone must decide what to do with
    /// it), a directory another chittyd uses, a path chittyd may not create or write. A thread
    /// that cannot be started, or a full disk, may pass.
    pub fn is_configuration(&self) -> bool {
        match self {
            StateError::Corrupt { .. } | StateError::Newer { .. } | StateError::InUse(_) => true,
            StateError::Dir { source, .. }
            | StateError::Read { source, .. }
            | StateError::Write { source, .. } => crate::os::path_error_is_configuration(source),
            StateError::Thread(_) => false,
        }
    }
}

/// A ban as it is saved: wall-clock times, since it must mean the same after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedBan {
    /// The name as it was typed by its owner.
    pub name: String,
    /// When it ends.
    pub until: SystemTime,
    /// When it was given.
    pub since: SystemTime,
    /// The operator's reason.
    pub reason: String,
    /// Who gave it (`uid=0 pid=1234`).
    pub actor: String,
}

/// What the hub starts from: its counters (shared with the thread that reserves them), the bans
/// in force, and its handle on that thread.
pub struct Restored {
    /// The Lamport clock, at the saved time.
    pub clock: Arc<LamportClock>,
    /// The next user id to hand out.
    pub next_id: Arc<AtomicU64>,
    /// The bans saved (the hub drops those that have ended).
    pub bans: Vec<SavedBan>,
    /// The hub's handle on the state thread.
    pub keeper: Keeper,
}

impl Restored {
    /// A server without a state directory: Lamport time 0, ids from 1, no bans, nothing saved.
    pub fn fresh() -> Restored {
        Restored {
            clock: Arc::new(LamportClock::new()),
            next_id: Arc::new(AtomicU64::new(Counts::FIRST.next_id)),
            bans: Vec::new(),
            keeper: Keeper::none(),
        }
    }
}

/// Reads the state in `config.dir`, writes the first reservation, and starts the thread that
/// keeps it. Nothing is handed out before the reservation is on disk.
pub fn open(config: &StateConfig) -> Result<(Restored, StateWriter), StateError> {
    keeper::start(config)
}
