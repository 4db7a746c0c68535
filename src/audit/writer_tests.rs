//! The writer's accounting against a real file on a disk that fills up on command: no torn or
//! merged line, the lost count, the `audit_dropped` reports, and the log throttle (time passed
//! in, no sleeps).

use super::*;
use std::fs::File;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// A real file whose disk has `space` bytes left (`None`: plenty): a write that does not fit
/// writes what fits and the next one fails with ENOSPC, as a full filesystem does.
struct Disk {
    file: File,
    space: Arc<Mutex<Option<usize>>>,
    /// While set, cutting fails too.
    cut_fails: Arc<AtomicBool>,
}

impl Sink for Disk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut space = self.space.lock().unwrap();
        match *space {
            Some(0) => Err(io::Error::from_raw_os_error(
                rustix::io::Errno::NOSPC.raw_os_error(),
            )),
            Some(left) => {
                let n = Sink::write(&mut self.file, &buf[..left.min(buf.len())])?;
                *space = Some(left - n);
                Ok(n)
            }
            None => Sink::write(&mut self.file, buf),
        }
    }

    fn cut(&mut self, tail: u64) -> io::Result<()> {
        if self.cut_fails.load(Ordering::Relaxed) {
            return Err(io::Error::other("cannot truncate"));
        }
        self.file.cut(tail)
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    trail: Trail,
    counters: Arc<Counters>,
    space: Arc<Mutex<Option<usize>>>,
    cut_fails: Arc<AtomicBool>,
    t0: Instant,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let space = Arc::new(Mutex::new(None));
        let cut_fails = Arc::new(AtomicBool::new(false));
        let disk = Disk {
            file: sink::open(&path).unwrap(),
            space: Arc::clone(&space),
            cut_fails: Arc::clone(&cut_fails),
        };
        let counters = Arc::new(Counters::default());
        let trail = Trail::new(
            Some((path.clone(), Box::new(disk))),
            false,
            Arc::clone(&counters),
        );
        Fixture {
            _dir: dir,
            path,
            trail,
            counters,
            space,
            cut_fails,
            t0: Instant::now(),
        }
    }

    fn space(&self, bytes: Option<usize>) {
        *self.space.lock().unwrap() = bytes;
    }

    /// Writes records with these Lamport times, `secs` seconds after the start.
    fn write(&mut self, lamports: std::ops::RangeInclusive<u64>, secs: u64) {
        let mut batch: Vec<_> = lamports.map(|l| Record::new(l, "message")).collect();
        let now = self.t0 + Duration::from_secs(secs);
        self.trail.write_batch(&mut batch, now);
        assert!(batch.is_empty());
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap()
    }

    /// Every line, each of which must be one whole JSON object.
    fn records(&self) -> Vec<serde_json::Value> {
        let text = self.text();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "torn end: {text:?}"
        );
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect()
    }

    fn lost(&self) -> u64 {
        self.counters.lost.load(Ordering::Relaxed)
    }

    fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }
}

fn line_len(lamport: u64) -> usize {
    serde_json::to_vec(&Record::new(lamport, "message"))
        .unwrap()
        .len()
        + 1
}

fn events(records: &[serde_json::Value]) -> Vec<(&str, u64)> {
    records
        .iter()
        .map(|r| (r["event"].as_str().unwrap(), r["lamport"].as_u64().unwrap()))
        .collect()
}

#[test]
fn a_write_that_fails_part_way_leaves_whole_lines_and_the_loss_is_reported() {
    let mut f = Fixture::new();
    // Room for two lines and a third of the next.
    f.space(Some(line_len(1) + line_len(2) + 20));
    f.write(1..=5, 0);
    assert_eq!(f.lost(), 3);
    assert_eq!(f.written(), 2);
    assert_eq!(
        events(&f.records()),
        [("message", 1), ("message", 2)],
        "the third line was cut back"
    );
    // Still full: everything is lost, nothing is retried.
    f.write(6..=7, 1);
    assert_eq!(f.lost(), 5);
    assert_eq!(f.records().len(), 2);

    f.space(None);
    f.write(8..=8, 2);
    let records = f.records();
    assert_eq!(
        events(&records),
        [
            ("message", 1),
            ("message", 2),
            ("audit_dropped", 7),
            ("message", 8)
        ],
        "the report comes first, at the time of the last lost record"
    );
    assert_eq!(records[2]["count"], 5);
    let reason = records[2]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("write failed: No space left on device"),
        "{reason}"
    );
    assert_eq!(f.lost(), 5, "the report does not change the count");
    assert_eq!(f.written(), 4);

    // Reported once: the next batch has no report.
    f.write(9..=9, 3);
    assert_eq!(f.records().len(), 5);
}

#[test]
fn a_failed_report_waits_for_the_next_write_that_works() {
    let mut f = Fixture::new();
    f.space(Some(0));
    f.write(1..=2, 0);
    // Room for half of the report: it is cut back and stays due, with the new loss added.
    f.space(Some(30));
    f.write(3..=3, 1);
    assert_eq!(f.text(), "");
    assert_eq!(f.lost(), 3);
    f.space(None);
    f.write(4..=4, 2);
    let records = f.records();
    assert_eq!(events(&records), [("audit_dropped", 3), ("message", 4)]);
    assert_eq!(records[0]["count"], 3);
}

#[test]
fn queue_drops_and_write_losses_are_reported_apart() {
    let mut f = Fixture::new();
    f.space(Some(0));
    f.write(1..=1, 0);
    f.space(None);
    // Meanwhile the full queue refused two records.
    f.counters.unreported.store(2, Ordering::Relaxed);
    f.write(4..=4, 1);
    let records = f.records();
    assert_eq!(
        events(&records),
        [("audit_dropped", 1), ("message", 4), ("audit_dropped", 4)]
    );
    assert_eq!(records[0]["count"], 1);
    assert!(
        records[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("write failed: ")
    );
    assert_eq!(records[2]["count"], 2);
    assert_eq!(records[2]["reason"], QUEUE_FULL);
    assert_eq!(f.lost(), 1);
}

#[test]
fn a_fragment_that_cannot_be_cut_blocks_appends_until_it_can() {
    let mut f = Fixture::new();
    f.cut_fails.store(true, Ordering::Relaxed);
    f.space(Some(line_len(1) + 10));
    f.write(1..=2, 0);
    assert_eq!(f.lost(), 1);
    assert_eq!(f.text().lines().count(), 2, "one line and a fragment");
    // Space again, but the fragment is still there: appending would glue a record onto it.
    f.space(None);
    f.write(3..=3, 1);
    assert_eq!(f.lost(), 2);
    assert!(
        !f.text().ends_with('\n'),
        "nothing appended to the fragment"
    );
    f.cut_fails.store(false, Ordering::Relaxed);
    f.write(4..=4, 2);
    let records = f.records();
    assert_eq!(
        events(&records),
        [("message", 1), ("audit_dropped", 3), ("message", 4)]
    );
    assert_eq!(records[1]["count"], 2);
}

#[test]
fn failures_are_logged_once_per_period_with_what_was_held_back() {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let mut f = Fixture::new();
    let to = Arc::clone(&logs);
    f.trail.log_to(Box::new(move |level, line| {
        to.lock().unwrap().push((level, line))
    }));
    f.space(Some(0));
    // One failed write a second for 10 s, then one at 10 s: two lines.
    for s in 0..=10 {
        f.write(s + 1..=s + 1, s);
    }
    f.space(None);
    f.write(12..=12, 11);
    f.write(13..=13, 12);
    let logs = logs.lock().unwrap();
    let lines: Vec<_> = logs.iter().map(|(l, m)| format!("{l} {m}")).collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[0].starts_with("ERROR writing audit log "),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("No space left on device"), "{}", lines[0]);
    assert!(lines[0].contains("1 records lost"), "{}", lines[0]);
    assert!(
        lines[1].contains("11 records lost")
            && lines[1].ends_with("(9 more failed writes since the last report)"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("WARN audit log ")
            && lines[2].contains("11 records could not be written"),
        "{}",
        lines[2]
    );
    assert_eq!(f.lost(), 11);
}

#[test]
fn without_a_file_every_record_counts_as_written() {
    let counters = Arc::new(Counters::default());
    let mut trail = Trail::new(None, false, Arc::clone(&counters));
    counters.unreported.store(1, Ordering::Relaxed);
    let mut batch = vec![Record::new(1, "join"), Record::new(2, "message")];
    trail.write_batch(&mut batch, Instant::now());
    assert_eq!(counters.written.load(Ordering::Relaxed), 3);
    assert_eq!(counters.lost.load(Ordering::Relaxed), 0);
}
