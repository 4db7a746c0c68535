//! The audit trail: one JSON object per line for every event, in Lamport order.
//!
//! The hub creates each record while it holds its lock, right where it assigns the Lamport time,
//! so the trail's order is the hub's order. It hands the record to a bounded queue and never
//! waits. The writer, a thread of its own ("chitty-audit"), owns the sinks (a file or standard
//! output, and journald), formats the records and does the blocking writes, so no async worker
//! ever waits for a disk or the journal. At shutdown it drains the queue completely, writes
//! everything and only then says it is done.
//!
//! Two ways a record can miss the trail, each counted and each recorded in the trail itself as an
//! `audit_dropped` record with the count, as soon as that is possible:
//! - **Dropped** ([`Auditor::dropped`]): the queue was full (the writer is behind). Reason "the
//!   audit writer could not keep up"; written after the batch the writer was on.
//! - **Lost** ([`Auditor::lost`]): the file write failed (a full disk, an I/O error). A record
//!   whose write failed is not retried: chat never waits for disk, and the queue keeps absorbing
//!   while the disk is full (overflowing into "dropped" as usual). When a write works again, the
//!   first line written is an `audit_dropped` record with the number lost and the reason, e.g.
//!   "write failed: No space left on device (os error 28)". The file never keeps a torn line: a
//!   write that fails part-way is cut back to the last complete line. The failure is
//!   logged at most once per [`LOG_EVERY`], with how many records are lost so far.

pub mod journal;
mod record;
mod sink;
mod writer;

pub use journal::AUDIT_TARGET;
pub use record::Record;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// The queue between the hub and the writer holds this many records by default.
pub const DEFAULT_QUEUE: usize = 65_536;

/// A failing audit file is logged at most once per this period, with a count of the failures
/// held back, so that a full disk does not flood the journal with one line per record.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Where records go.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Append JSON lines to this file ("-" for standard output).
    pub file: Option<PathBuf>,
    /// Also send each record to journald as a structured entry.
    pub journal: bool,
    /// Include message text in records (personal data: off by default).
    pub text: bool,
    /// Bound of the queue between the hub and the writer.
    pub queue: usize,
}

/// No trail, with the queue chittyd uses: a derived default's queue of 0 (made 1) would drop
/// records from any `..Default::default()` configuration the moment two arrive together.
impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            file: None,
            journal: false,
            text: false,
            queue: DEFAULT_QUEUE,
        }
    }
}

/// Why the audit trail could not be set up.
#[derive(Debug, Error)]
pub enum AuditError {
    /// The audit file could not be opened.
    #[error("cannot open audit log {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The writer's thread could not be started.
    #[error("cannot start the audit writer thread: {0}")]
    Thread(io::Error),
}

impl AuditError {
    /// Whether the configuration is at fault (see [`crate::exit`]): a file that cannot be
    /// opened for a reason starting again will not fix.
    pub fn is_configuration(&self) -> bool {
        match self {
            AuditError::Open { source, .. } => crate::os::path_error_is_configuration(source),
            AuditError::Thread(_) => false,
        }
    }
}

/// The hub's handle: enqueue without waiting.
#[derive(Debug)]
pub struct Auditor {
    /// The bounded queue to the writer. Overflow rule: `try_send`, and a record that does not
    /// fit is counted as dropped (and later reported in the trail), never waited for.
    tx: Option<mpsc::Sender<Record>>,
    counters: Arc<Counters>,
    text: bool,
}

/// Shared between the hub's handle (which counts drops) and the writer (which counts what it
/// wrote or lost, and reports drops).
#[derive(Debug, Default)]
struct Counters {
    /// Records dropped from a full queue since the writer last reported them.
    unreported: AtomicU64,
    /// Records dropped from a full queue since start.
    dropped: AtomicU64,
    /// Records whose file write failed since start.
    lost: AtomicU64,
    /// Records written since start, the trail's own `audit_dropped` records included.
    written: AtomicU64,
}

impl Auditor {
    /// An auditor that records nothing (no sink configured).
    pub fn disabled() -> Self {
        Auditor {
            tx: None,
            counters: Arc::default(),
            text: false,
        }
    }

    /// Whether records may carry message text.
    pub fn with_text(&self) -> bool {
        self.text
    }

    /// Whether any sink is configured; the hub skips building records otherwise.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Enqueues a record. Never waits: if the writer is behind, the record is counted as dropped
    /// and the writer reports the drop in the trail itself.
    pub fn record(&self, record: Record) {
        if let Some(tx) = &self.tx
            && tx.try_send(record).is_err()
        {
            self.counters.unreported.fetch_add(1, Ordering::Relaxed);
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records dropped since start because the queue was full (the writer was behind); they
    /// never reached any sink.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Records lost since start because writing them to the audit file failed (a full disk);
    /// they went to the journal, if it is a sink, but are not in the file.
    pub fn lost(&self) -> u64 {
        self.counters.lost.load(Ordering::Relaxed)
    }

    /// Records written since start (to the file when there is one), the trail's own
    /// `audit_dropped` records included.
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// Records waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx
            .as_ref()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }

    /// Adds the audit trail's figures to `out`.
    pub fn observe(&self, out: &mut crate::metric::Snapshot) {
        out.counter(
            "audit_records_written_total",
            "Audit records written.",
            self.written(),
        );
        out.counter(
            "audit_records_dropped_total",
            "Audit records dropped because the writer was behind (--audit-queue).",
            self.dropped(),
        );
        out.counter(
            "audit_records_lost_total",
            "Audit records that could not be written to the audit file (a full disk).",
            self.lost(),
        );
        out.gauge(
            "audit_queue_depth",
            "Audit records waiting for the writer.",
            self.queued() as u64,
        );
    }
}

/// The writer thread's controls. Its thread is started by [`open`] but writes nothing until
/// [`AuditWriter::run`] starts it; dropped unstarted, the thread ends.
pub struct AuditWriter {
    /// Hands the thread its stop token: the start signal.
    start: oneshot::Sender<CancellationToken>,
    /// Fires when the thread has written and flushed everything and ended.
    done: oneshot::Receiver<()>,
    /// SIGHUP's way in: the thread reopens the file when notified.
    reopen: Arc<Notify>,
}

/// Opens the sinks and starts the writer's thread. Returns the hub's handle, and the writer to
/// run (none when no sink is configured).
pub fn open(config: &AuditConfig) -> Result<(Auditor, Option<AuditWriter>), AuditError> {
    if config.file.is_none() && !config.journal {
        return Ok((Auditor::disabled(), None));
    }
    let file = match &config.file {
        Some(path) => {
            let file = sink::open(path).map_err(|source| AuditError::Open {
                path: path.clone(),
                source,
            })?;
            Some((path.clone(), Box::new(file) as Box<dyn sink::Sink>))
        }
        None => None,
    };
    let (tx, rx) = mpsc::channel(config.queue.max(1));
    let counters = Arc::new(Counters::default());
    let auditor = Auditor {
        tx: Some(tx),
        counters: Arc::clone(&counters),
        text: config.text,
    };
    let trail = writer::Trail::new(file, config.journal, counters);
    let reopen = Arc::new(Notify::new());
    let (start, done) =
        writer::spawn(rx, trail, Arc::clone(&reopen)).map_err(AuditError::Thread)?;
    let writer = AuditWriter {
        start,
        done,
        reopen,
    };
    Ok((auditor, Some(writer)))
}

impl AuditWriter {
    /// A handle that makes the writer reopen its file (for SIGHUP after logrotate).
    pub fn reopen_handle(&self) -> Arc<Notify> {
        Arc::clone(&self.reopen)
    }

    /// Lets the thread write records until every sender is gone (the hub was dropped) or `stop`
    /// fires; then it drains whatever is still queued and writes it. Resolves when all of that
    /// is done, without blocking the async worker that awaits it.
    pub async fn run(self, stop: CancellationToken) {
        if self.start.send(stop).is_err() || self.done.await.is_err() {
            tracing::error!("the audit writer thread ended early; records still queued are lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;

    fn config(path: &std::path::Path, queue: usize) -> AuditConfig {
        AuditConfig {
            file: Some(path.to_owned()),
            journal: false,
            text: false,
            queue,
        }
    }

    fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_records_the_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let (auditor, writer) = open(&config(&path, 2)).unwrap();
        // The writer is not running yet: the queue holds two records, the rest are dropped.
        for l in 1..=5 {
            auditor.record(Record::new(l, "message"));
        }
        assert_eq!(auditor.dropped(), 3);
        let stop = tokio_util::sync::CancellationToken::new();
        stop.cancel();
        writer.unwrap().run(stop).await;
        let records = lines(&path);
        let events: Vec<_> = records
            .iter()
            .map(|r| r["event"].as_str().unwrap())
            .collect();
        assert_eq!(events, ["message", "message", "audit_dropped"]);
        assert_eq!(records[2]["count"], 3);
        assert_eq!(
            records[2]["lamport"], 2,
            "the drop record follows the last written one"
        );
        assert_eq!(auditor.written(), 3);
    }

    #[tokio::test]
    async fn the_file_is_created_0640_and_appended() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        for round in 0..2 {
            let (auditor, writer) = open(&config(&path, 16)).unwrap();
            let mut r = Record::new(round + 1, "join");
            r.user = Some("alice".into());
            auditor.record(r);
            drop(auditor);
            writer
                .unwrap()
                .run(tokio_util::sync::CancellationToken::new())
                .await;
        }
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640 & !umask());
        let records = lines(&path);
        assert_eq!(records.len(), 2, "the second run appended");
        let time = records[0]["time"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(time).is_ok(), "{time}");
        assert!(time.ends_with('Z'), "UTC: {time}");
    }

    fn umask() -> u32 {
        // The process umask can only narrow 0640; read it back from a fresh file.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("probe");
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o777)
            .open(&p)
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        !std::fs::metadata(&p).unwrap().permissions().mode() & 0o777
    }
}
