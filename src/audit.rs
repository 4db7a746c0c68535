//! The audit trail: one JSON object per line for every event, in Lamport order.
//!
//! The hub creates each record while it holds its lock, right where it assigns the Lamport time,
//! so the trail's order is the hub's order. It hands the record to a bounded queue and never
//! waits: when the queue is full the record is counted as dropped, and the writer writes a record
//! of the drop itself ("audit_dropped", with the count) as soon as it catches up. The writer task
//! owns the sinks (a file, standard output, journald) and flushes after every batch; at shutdown
//! it drains the queue completely before it returns.

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;
use thiserror::Error;
use tokio::sync::{Notify, mpsc};

/// The queue between the hub and the writer holds this many records by default.
pub const DEFAULT_QUEUE: usize = 65_536;

/// One audit record. Field names are a stable interface: operators' jq filters use them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Record {
    /// The Lamport time of the event.
    pub lamport: u64,
    /// When the event happened (RFC 3339, UTC, microseconds).
    #[serde(serialize_with = "rfc3339")]
    pub time: Option<SystemTime>,
    /// What happened: join, leave, message, direct, reject, kick, announce, …
    pub event: &'static str,
    /// The participant's username, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The session's numeric id (the user id of the one sequence).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<u64>,
    /// The participant's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// grpc or websocket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<&'static str>,
    /// Why: how a participant left, why input was rejected, an operator's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Length of the message text in characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub len: Option<usize>,
    /// The message text, only with `--audit-text`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The recipient's id, for direct messages and actions on a participant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<u64>,
    /// The recipient's username, where it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_user: Option<String>,
    /// Who did it, for admin actions: `uid=0 pid=1234` from the admin socket's peer credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// A count: records dropped (audit_dropped), participants (shutdown), ban seconds (kick).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

fn rfc3339<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    let t = t.unwrap_or_else(SystemTime::now);
    s.collect_str(&humantime::format_rfc3339_micros(t))
}

impl Record {
    /// A record of `event` at Lamport time `lamport`, stamped now.
    pub fn new(lamport: u64, event: &'static str) -> Self {
        Record {
            lamport,
            time: Some(SystemTime::now()),
            event,
            ..Record::default()
        }
    }

    /// A readable one-line summary, used as the journal's MESSAGE.
    pub fn summary(&self) -> String {
        let mut s = format!("L{} {}", self.lamport, self.event);
        if let Some(user) = &self.user {
            s.push(' ');
            s.push_str(user);
        }
        if let Some(session) = self.session {
            s.push_str(&format!(" #{session}"));
        }
        if let Some(recipient) = self.recipient {
            s.push_str(&format!(" -> #{recipient}"));
        }
        if let Some(reason) = &self.reason {
            s.push_str(&format!(" ({reason})"));
        }
        if let Some(actor) = &self.actor {
            s.push_str(&format!(" by {actor}"));
        }
        s
    }
}

/// Where records go.
#[derive(Debug, Clone, Default)]
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
}

/// The hub's handle: enqueue without waiting.
#[derive(Debug)]
pub struct Auditor {
    tx: Option<mpsc::Sender<Record>>,
    counters: Arc<Counters>,
    text: bool,
}

#[derive(Debug, Default)]
struct Counters {
    /// Records dropped since the writer last reported it.
    unreported: AtomicU64,
    /// Records dropped since start.
    dropped: AtomicU64,
    /// Records written since start.
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

    /// Records dropped since start.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Records written since start.
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
        out.gauge(
            "audit_queue_depth",
            "Audit records waiting for the writer.",
            self.queued() as u64,
        );
    }
}

/// The writer task's state: the queue's receiving end and the sinks.
pub struct AuditWriter {
    rx: mpsc::Receiver<Record>,
    counters: Arc<Counters>,
    file: Option<(PathBuf, BufWriter<Box<dyn Write + Send>>)>,
    journal: bool,
    reopen: Arc<Notify>,
    last_lamport: u64,
}

/// Opens the sinks. Returns the hub's handle, and the writer to run as a task (none when no sink
/// is configured).
pub fn open(config: &AuditConfig) -> Result<(Auditor, Option<AuditWriter>), AuditError> {
    if config.file.is_none() && !config.journal {
        return Ok((Auditor::disabled(), None));
    }
    let file = match &config.file {
        Some(path) => Some((path.clone(), open_sink(path)?)),
        None => None,
    };
    let (tx, rx) = mpsc::channel(config.queue.max(1));
    let counters = Arc::new(Counters::default());
    let auditor = Auditor {
        tx: Some(tx),
        counters: Arc::clone(&counters),
        text: config.text,
    };
    let writer = AuditWriter {
        rx,
        counters,
        file,
        journal: config.journal,
        reopen: Arc::new(Notify::new()),
        last_lamport: 0,
    };
    Ok((auditor, Some(writer)))
}

fn open_sink(path: &PathBuf) -> Result<BufWriter<Box<dyn Write + Send>>, AuditError> {
    let sink: Box<dyn Write + Send> = if path.as_os_str() == "-" {
        Box::new(io::stdout())
    } else {
        let file: File = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
            .map_err(|source| AuditError::Open {
                path: path.clone(),
                source,
            })?;
        Box::new(file)
    };
    Ok(BufWriter::with_capacity(64 * 1024, sink))
}

impl AuditWriter {
    /// A handle that makes the writer reopen its file (for SIGHUP after logrotate).
    pub fn reopen_handle(&self) -> Arc<Notify> {
        Arc::clone(&self.reopen)
    }

    /// Writes records until every sender is gone (the hub was dropped) or `stop` fires; then
    /// drains whatever is still queued, flushes, and returns.
    pub async fn run(mut self, stop: tokio_util::sync::CancellationToken) {
        let mut batch = Vec::with_capacity(256);
        loop {
            tokio::select! {
                biased;
                n = self.rx.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        break;
                    }
                    self.write_batch(&mut batch);
                }
                () = self.reopen.notified() => self.reopen_file(),
                () = stop.cancelled() => break,
            }
        }
        // Everything the hub enqueued before the stop is still in the queue: write it all.
        self.rx.close();
        while self.rx.recv_many(&mut batch, 256).await > 0 {
            self.write_batch(&mut batch);
        }
        self.report_drops();
        self.flush();
    }

    fn write_batch(&mut self, batch: &mut Vec<Record>) {
        for record in batch.drain(..) {
            self.write(&record);
        }
        self.report_drops();
        self.flush();
    }

    fn report_drops(&mut self) {
        let dropped = self.counters.unreported.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let mut record = Record::new(self.last_lamport, "audit_dropped");
            record.count = Some(dropped);
            record.reason = Some("the audit writer could not keep up".into());
            self.write(&record);
        }
    }

    fn write(&mut self, record: &Record) {
        self.last_lamport = record.lamport;
        if let Some((path, sink)) = &mut self.file {
            let line = serde_json::to_vec(record).unwrap_or_default();
            if let Err(e) = sink.write_all(&line).and_then(|()| sink.write_all(b"\n")) {
                tracing::error!("writing audit log {}: {e}", path.display());
            }
        }
        if self.journal {
            crate::systemd::journal_audit(record);
        }
        self.counters.written.fetch_add(1, Ordering::Relaxed);
    }

    fn flush(&mut self) {
        if let Some((path, sink)) = &mut self.file
            && let Err(e) = sink.flush()
        {
            tracing::error!("flushing audit log {}: {e}", path.display());
        }
    }

    fn reopen_file(&mut self) {
        self.flush();
        if let Some((path, sink)) = &mut self.file {
            if path.as_os_str() == "-" {
                return;
            }
            match open_sink(path) {
                Ok(new) => {
                    *sink = new;
                    tracing::info!("reopened audit log {}", path.display());
                }
                Err(e) => tracing::error!("{e}; still writing to the old file"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
