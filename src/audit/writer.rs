//! The writer's thread, and what it does with each batch: format the records as JSON lines,
//! append them to the file in one write, send them to the journal, and account for every record
//! that could not be written.
//!
//! The thread waits on the queue, the reopen signal and the stop token through a current-thread
//! runtime of its own (no I/O or timer driver: it only ever waits on tokio's channels), and does
//! the blocking writes outside it. Everything here but [`spawn`] takes the time as a parameter.

use super::sink::{self, Sink};
use super::{Counters, LOG_EVERY, Record, journal};
use crate::throttle::Throttle;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Records taken from the queue at once: one write to the file for all of them.
const BATCH: usize = 256;

/// The reason of the `audit_dropped` record for records the full queue refused.
pub(super) const QUEUE_FULL: &str = "the audit writer could not keep up";

/// Starts the writer's thread. It waits for the stop token on the returned sender before it
/// writes anything (and ends if the sender is dropped), and fires the returned receiver once it
/// has drained the queue and written everything.
pub(super) fn spawn(
    mut rx: mpsc::Receiver<Record>,
    mut trail: Trail,
    reopen: Arc<Notify>,
) -> io::Result<(oneshot::Sender<CancellationToken>, oneshot::Receiver<()>)> {
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let (start_tx, start_rx) = oneshot::channel::<CancellationToken>();
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("chitty-audit".into())
        .spawn(move || {
            let Ok(stop) = runtime.block_on(start_rx) else {
                return;
            };
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                let wake = runtime.block_on(async {
                    tokio::select! {
                        biased;
                        n = rx.recv_many(&mut batch, BATCH) => Wake::Records(n),
                        () = reopen.notified() => Wake::Reopen,
                        () = stop.cancelled() => Wake::Stop,
                    }
                });
                match wake {
                    Wake::Records(0) | Wake::Stop => break,
                    Wake::Records(_) => trail.write_batch(&mut batch, Instant::now()),
                    Wake::Reopen => trail.reopen(),
                }
            }
            // Everything the hub enqueued before the stop is still in the queue: write it all.
            rx.close();
            while runtime.block_on(rx.recv_many(&mut batch, BATCH)) > 0 {
                trail.write_batch(&mut batch, Instant::now());
            }
            trail.finish(Instant::now());
            let _ = done_tx.send(());
        })?;
    Ok((start_tx, done_rx))
}

/// What woke the writer.
enum Wake {
    /// This many records arrived; 0 when the queue is closed and empty.
    Records(usize),
    /// SIGHUP: reopen the file.
    Reopen,
    /// Shutdown: drain and end.
    Stop,
}

/// The sinks and the accounts: everything the writer's thread owns.
pub(super) struct Trail {
    file: Option<AuditFile>,
    journal: bool,
    counters: Arc<Counters>,
    /// The Lamport time of the last record taken from the queue, which the trail's own
    /// `audit_dropped` records carry.
    last_lamport: u64,
}

impl Trail {
    /// The file (with its path, "-" for standard output), if any, and whether to write to the
    /// journal.
    pub(super) fn new(
        file: Option<(PathBuf, Box<dyn Sink>)>,
        journal: bool,
        counters: Arc<Counters>,
    ) -> Trail {
        Trail {
            file: file.map(|(path, sink)| AuditFile::new(path, sink)),
            journal,
            counters,
            last_lamport: 0,
        }
    }

    /// Sends the file's log lines to `log` instead of chittyd's log.
    #[cfg(test)]
    pub(super) fn log_to(&mut self, log: Log) {
        if let Some(file) = &mut self.file {
            file.log = log;
        }
    }

    /// Writes a batch (and empties it), followed by the report of records the full queue
    /// refused since the last batch, if any.
    pub(super) fn write_batch(&mut self, batch: &mut Vec<Record>, now: Instant) {
        // The report of lost records goes before this batch, at the time of the last record
        // that was lost, so the file stays in Lamport order.
        let lost_at = self.last_lamport;
        if let Some(last) = batch.last() {
            self.last_lamport = last.lamport;
        }
        let dropped = self.counters.unreported.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            batch.push(dropped_record(
                self.last_lamport,
                dropped,
                QUEUE_FULL.into(),
            ));
        }
        let written = match &mut self.file {
            Some(file) => file.write(batch, lost_at, &self.counters, now),
            None => batch.len() as u64,
        };
        if self.journal {
            // The journal gets every record, also those the file lost (so not the report of
            // those: the journal lost nothing).
            batch.iter().for_each(journal::emit);
        }
        self.counters.written.fetch_add(written, Ordering::Relaxed);
        batch.clear();
    }

    /// At the end: reports what is still unreported if the file can take it now, and says in
    /// the log what it could not.
    pub(super) fn finish(&mut self, now: Instant) {
        self.write_batch(&mut Vec::new(), now);
        if let Some(file) = &mut self.file {
            file.finish(now);
        }
    }

    /// Reopens the file at its path (after logrotate moved it away); standard output stays.
    pub(super) fn reopen(&mut self) {
        if let Some(file) = &mut self.file {
            file.reopen();
        }
    }
}

/// An `audit_dropped` record: `count` records are missing from the trail, and why.
fn dropped_record(lamport: u64, count: u64, reason: String) -> Record {
    let mut record = Record::new(lamport, "audit_dropped");
    record.count = Some(count);
    record.reason = Some(reason);
    record
}

/// The audit file (or standard output): where it is, its sink, and what failed to reach it.
struct AuditFile {
    path: PathBuf,
    sink: Box<dyn Sink>,
    /// Bytes of an unfinished line still at the end of the file, because cutting them after a
    /// failed write failed too. Nothing is appended until they are gone: the next record would
    /// be glued onto them.
    torn: u64,
    /// Records lost since the last report of them in the file.
    lost: u64,
    /// Why the first of them was lost: the reason of the report.
    cause: Option<String>,
    /// Failed writes: one log line per period.
    failures: Throttle,
    /// Writes that work again after failing: one log line per period (a disk at the edge of
    /// full may alternate).
    recoveries: Throttle,
    /// Where the file's operational lines go: chittyd's log, or a test's list.
    log: Log,
    /// One batch's lines, reused.
    buf: Vec<u8>,
    /// Where each record's line ends in `buf`.
    ends: Vec<usize>,
}

/// A sink for the audit file's own log lines (level, message). A parameter, so that a test reads
/// them from its own list instead of a tracing subscriber, whose callsite cache other threads
/// of the test binary share.
pub(super) type Log = Box<dyn FnMut(tracing::Level, String) + Send>;

/// chittyd's log, at the line's level.
fn to_tracing(level: tracing::Level, line: String) {
    match level {
        tracing::Level::ERROR => tracing::error!("{line}"),
        tracing::Level::WARN => tracing::warn!("{line}"),
        _ => tracing::info!("{line}"),
    }
}

/// A write that failed after `written` bytes.
struct Failure {
    written: usize,
    error: io::Error,
}

impl AuditFile {
    fn new(path: PathBuf, sink: Box<dyn Sink>) -> AuditFile {
        AuditFile {
            path,
            sink,
            torn: 0,
            lost: 0,
            cause: None,
            failures: Throttle::new(LOG_EVERY),
            recoveries: Throttle::new(LOG_EVERY),
            log: Box::new(to_tracing),
            buf: Vec::with_capacity(64 * 1024),
            ends: Vec::with_capacity(BATCH + 1),
        }
    }

    /// Appends `records` as lines in one write, after the report of earlier losses (at Lamport
    /// time `lost_at`) if there were any. Returns the lines written; the records whose lines
    /// were not written completely are counted as lost.
    fn write(
        &mut self,
        records: &[Record],
        lost_at: u64,
        counters: &Counters,
        now: Instant,
    ) -> u64 {
        self.buf.clear();
        self.ends.clear();
        let report = self.lost > 0;
        if report {
            let cause = self.cause.clone().unwrap_or_default();
            push_line(&mut self.buf, &dropped_record(lost_at, self.lost, cause));
        }
        let report_end = self.buf.len();
        for record in records {
            if push_line(&mut self.buf, record) {
                self.ends.push(self.buf.len());
            }
        }
        if self.buf.is_empty() {
            return 0;
        }
        let (written, failure) = match self.append() {
            Ok(()) => (self.buf.len(), None),
            Err(Failure { written, error }) => (written, Some(error)),
        };
        let report_written = report && report_end <= written;
        let reported = if report_written {
            self.cause = None;
            std::mem::take(&mut self.lost)
        } else {
            0
        };
        let whole = self.ends.iter().filter(|&&end| end <= written).count();
        let lost = (records.len() - whole) as u64;
        self.lost += lost;
        counters.lost.fetch_add(lost, Ordering::Relaxed);
        match failure {
            Some(error) => self.failed(&error, now),
            None => {
                if lost > 0 {
                    self.cause
                        .get_or_insert_with(|| "a record could not be formatted as JSON".into());
                }
                if reported > 0 {
                    self.recovered(reported, now);
                }
            }
        }
        whole as u64 + u64::from(report_written)
    }

    /// Writes all of `buf`, or fails saying how much of it went out.
    fn append(&mut self) -> Result<(), Failure> {
        if self.torn > 0 {
            self.sink.cut(self.torn).map_err(|e| Failure {
                written: 0,
                error: io::Error::new(
                    e.kind(),
                    format!("a partly written line at the end cannot be removed: {e}"),
                ),
            })?;
            self.torn = 0;
        }
        let mut written = 0;
        while written < self.buf.len() {
            match self.sink.write(&self.buf[written..]) {
                Ok(0) => return Err(self.cut_back(written, io::ErrorKind::WriteZero.into())),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.cut_back(written, e)),
            }
        }
        Ok(())
    }

    /// After a write failed `written` bytes into `buf`: cuts the unfinished line those bytes end
    /// with, so that the file holds whole lines only.
    fn cut_back(&mut self, written: usize, error: io::Error) -> Failure {
        let whole = self.buf[..written]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let tail = (written - whole) as u64;
        if tail > 0
            && let Err(e) = self.sink.cut(tail)
        {
            self.torn = tail;
            let error = io::Error::new(
                error.kind(),
                format!("{error}, and the partly written line cannot be removed: {e}"),
            );
            return Failure { written, error };
        }
        Failure { written, error }
    }

    fn failed(&mut self, error: &io::Error, now: Instant) {
        self.cause
            .get_or_insert_with(|| format!("write failed: {error}"));
        if let Some(held) = self.failures.hit(now) {
            (self.log)(
                tracing::Level::ERROR,
                format!(
                    "writing audit log {}: {error}; {} records lost since it began to fail (chat \
                 goes on; the file will say how many when it can be written again){}",
                    self.path.display(),
                    self.lost,
                    held_back(held),
                ),
            );
        }
    }

    fn recovered(&mut self, reported: u64, now: Instant) {
        if self.recoveries.hit(now).is_some() {
            (self.log)(
                tracing::Level::WARN,
                format!(
                    "audit log {} is written again; {reported} records could not be written and are \
                 missing from it (recorded there as audit_dropped)",
                    self.path.display(),
                ),
            );
        }
    }

    /// At shutdown: what the log has not said yet.
    fn finish(&mut self, now: Instant) {
        if let Some(held) = self.failures.flush(now) {
            (self.log)(
                tracing::Level::ERROR,
                format!(
                    "writing audit log {}: {held} more writes failed since the last report",
                    self.path.display()
                ),
            );
        }
        if self.lost > 0 {
            (self.log)(
                tracing::Level::ERROR,
                format!(
                    "audit log {}: {} records could not be written before shutdown ({})",
                    self.path.display(),
                    self.lost,
                    self.cause.as_deref().unwrap_or("unknown cause"),
                ),
            );
        }
    }

    fn reopen(&mut self) {
        if self.path.as_os_str() == "-" {
            return;
        }
        match sink::open(&self.path) {
            Ok(new) => {
                if self.torn > 0 {
                    // Last chance to leave the old file with whole lines only.
                    let _ = self.sink.cut(self.torn);
                    self.torn = 0;
                }
                self.sink = Box::new(new);
                (self.log)(
                    tracing::Level::INFO,
                    format!("reopened audit log {}", self.path.display()),
                );
            }
            Err(e) => (self.log)(
                tracing::Level::ERROR,
                format!(
                    "cannot open audit log {}: {e}; still writing to the old file",
                    self.path.display()
                ),
            ),
        }
    }
}

/// Appends `record` and a newline to `buf`; false (and `buf` as it was) if it cannot be
/// formatted, which a `Record` cannot fail to be.
fn push_line(buf: &mut Vec<u8>, record: &Record) -> bool {
    let start = buf.len();
    if serde_json::to_writer(&mut *buf, record).is_err() {
        buf.truncate(start);
        return false;
    }
    buf.push(b'\n');
    true
}

/// The tail of a throttled log line.
fn held_back(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more failed writes since the last report)")
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
