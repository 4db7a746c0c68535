//! The audit file on a disk that fills up (a small tmpfs the test mounts): chat goes on, the
//! records that cannot be written are counted and reported once writing works again, the file
//! never keeps a torn line, and the error is logged at most once per 10 s.

use crate::root_or_skip;
use chitty_testkit::audit::{records, records_until};
use chitty_testkit::time::wait_until;
use chitty_testkit::{Raw, config, start};
use std::io::Write;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tracing_subscriber::layer::SubscriberExt;

/// A small tmpfs mounted for one test, unmounted when dropped, also when the test fails.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "256k"); `None` when the test is skipped (see
    /// `root_or_skip`). A mount that fails as root fails the test.
    fn mount(size: &str) -> Option<Tmpfs> {
        if !root_or_skip("mounting a tmpfs") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a failed test may still hold the audit file open.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Counts the warnings and errors chittyd's audit writer logs, in this process.
#[derive(Clone, Default)]
struct AuditLog(Arc<Mutex<Vec<(tracing::Level, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for AuditLog {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        if !meta.target().starts_with("chitty::audit") || *meta.level() > tracing::Level::WARN {
            return;
        }
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        self.0.lock().unwrap().push((*meta.level(), message.0));
    }
}

#[tokio::test]
async fn a_full_disk_loses_audit_records_counted_never_a_torn_line_and_chat_goes_on() {
    const BEFORE: usize = 20;
    const WHILE_FULL: usize = 400;
    const AFTER: usize = 30;
    let Some(disk) = Tmpfs::mount("256k") else {
        return;
    };
    let log = AuditLog::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("chitty=info"))
            .with(log.clone()),
    )
    .expect("the only test in this binary that sets the global subscriber");
    let path = disk.path().join("audit.log");
    let mut config = config();
    config.audit.file = Some(path.clone());
    config.audit.text = true;
    // AuditConfig::default() has a queue of one; chittyd's own default is what is tested.
    config.audit.queue = chitty::audit::DEFAULT_QUEUE;
    let server = start(config).await;
    let mut alice = server.join("alice").await;
    let say = async |alice: &mut Raw, text: String| {
        alice.say_as("alice", &text).await;
        alice.until(|m| m.message == text).await;
    };
    for n in 0..BEFORE {
        say(&mut alice, format!("before {n}")).await;
    }
    records_until(
        &path,
        "the records written before the disk is full",
        |records| records.iter().filter(|r| r["event"] == "message").count() >= BEFORE,
    )
    .await;

    // Fill the disk. The audit file's last page still has room for a few records, then a
    // record is cut short by ENOSPC, then every write fails.
    let filler = disk.path().join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let full = loop {
        if let Err(e) = f.write_all(&chunk) {
            break e;
        }
    };
    assert_eq!(
        full.raw_os_error(),
        Some(rustix::io::Errno::NOSPC.raw_os_error())
    );
    drop(f);
    let failing_since = Instant::now();
    for n in 0..WHILE_FULL {
        say(&mut alice, format!("full {n}")).await;
    }
    let failing_for = failing_since.elapsed();
    // The writer has tried every record so far (alice's join and her messages) before the disk
    // gets room again, so what it writes after the report was all sent after that.
    let audit = server.hub.audit();
    let tried = (1 + BEFORE + WHILE_FULL) as u64;
    wait_until("the writer getting through the records", || {
        audit.written() + audit.lost() >= tried
    })
    .await;

    std::fs::remove_file(&filler).unwrap();
    for n in 0..AFTER {
        say(&mut alice, format!("after {n}")).await;
    }
    let (lost, dropped) = (audit.lost(), audit.dropped());
    server.shutdown().await;

    let records = records(&path);
    let texts: Vec<&str> = records.iter().filter_map(|r| r["text"].as_str()).collect();
    let lost_line = records
        .iter()
        .position(|r| r["event"] == "audit_dropped")
        .expect("an audit_dropped record once the disk had room again");
    let report = &records[lost_line];
    let reason = report["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("write failed: ") && reason.contains("No space left on device"),
        "{report}"
    );
    assert_eq!(report["count"], lost, "the report carries the lost counter");
    assert_eq!(
        records
            .iter()
            .filter(|r| r["event"] == "audit_dropped")
            .count(),
        1
    );
    assert!(
        lost > WHILE_FULL as u64 / 2,
        "most records written while full are lost: {lost}"
    );
    assert_eq!(dropped, 0, "the queue never overflowed");
    // Every message is either in the file or counted as lost, and only while the disk was full.
    let messages = records.iter().filter(|r| r["event"] == "message").count();
    assert_eq!(messages as u64 + lost, (BEFORE + WHILE_FULL + AFTER) as u64);
    for n in 0..BEFORE {
        assert!(texts.contains(&format!("before {n}").as_str()));
    }
    for n in 0..AFTER {
        assert!(texts.contains(&format!("after {n}").as_str()));
    }
    assert_eq!(
        records[lost_line + 1]["text"],
        "after 0",
        "the report is the first line written when the disk had room again"
    );
    assert!(records.iter().any(|r| r["event"] == "shutdown"));

    // Hundreds of failed writes, and the log said so at most once per 10 s, then that writing
    // works again.
    let log = log.0.lock().unwrap().clone();
    let errors = log
        .iter()
        .filter(|(l, _)| *l == tracing::Level::ERROR)
        .count();
    // One line per 10 s of failures, plus one for a period boundary the writer's lag may cross.
    let allowed = 2 + failing_for.as_secs() as usize / 10;
    assert!(
        errors >= 1 && errors <= allowed,
        "{errors} error lines in {failing_for:?}: {log:#?}"
    );
    assert!(log[0].1.contains("No space left on device"), "{log:#?}");
    assert!(
        log.iter().any(|(l, m)| *l == tracing::Level::WARN
            && m.contains(&format!("{lost} records could not be written"))),
        "{log:#?}"
    );
}

/// The Lamport time and next user id `state.json` holds.
fn saved_counts(path: &std::path::Path) -> (u64, u64) {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    (
        v["lamport"].as_u64().unwrap(),
        v["next_user_id"].as_u64().unwrap(),
    )
}

/// The state directory on a disk that fills up: renewals of the reservation fail, chat goes on,
/// the failures and the values past the reservation are counted, and the first save once there
/// is room again reserves past everything handed out.
#[tokio::test]
async fn a_full_disk_delays_the_reservation_counted_and_chat_goes_on() {
    const BLOCK: u64 = 10;
    let Some(disk) = Tmpfs::mount("64k") else {
        return;
    };
    let dir = disk.path().join("state");
    let file = dir.join(chitty::state::FILE_NAME);
    let mut config = config();
    config.state = Some(chitty::state::StateConfig {
        dir: dir.clone(),
        block: BLOCK,
    });
    let server = start(config).await;
    let figures = || {
        let mut out = chitty::metric::Snapshot::default();
        server.hub.keeper().observe(&mut out);
        let get = |name| out.get(name).unwrap();
        (
            get("state_save_failures_total"),
            get("state_unsaved_lamport"),
            get("state_unsaved_user_ids"),
        )
    };
    let mut alice = server.join("alice").await;
    let say = async |alice: &mut Raw, text: String| {
        alice.say_as("alice", &text).await;
        alice.until(|m| m.message == text).await
    };
    for n in 0..3 * BLOCK {
        say(&mut alice, format!("before {n}")).await;
    }
    wait_until("the reservation renewed past the clock", || {
        saved_counts(&file).0 > server.hub.clock().now()
    })
    .await;
    assert_eq!(figures(), (0, 0, 0));

    let filler = disk.path().join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    drop(f);
    let reserved = saved_counts(&file).0;
    // Past the reservation on disk: chat goes on, and the gap is counted.
    for n in 0..3 * BLOCK {
        say(&mut alice, format!("full {n}")).await;
    }
    let mut late = server.open().await;
    late.send_join("late").await;
    late.until_joined("late").await;
    let now = server.hub.clock().now();
    assert!(now > reserved, "{now} is past the reservation {reserved}");
    assert_eq!(saved_counts(&file).0, reserved, "nothing could be saved");
    wait_until("the failures counted", || {
        let (failures, unsaved, _) = figures();
        failures > 0 && unsaved > 0
    })
    .await;
    let (_, unsaved, _) = figures();
    assert!(unsaved <= now - reserved, "{unsaved}");

    std::fs::remove_file(&filler).unwrap();
    wait_until("a save once there is room again", || figures().1 == 0).await;
    let (lamport, next_id) = saved_counts(&file);
    assert!(
        lamport > server.hub.clock().now(),
        "the reservation is past every Lamport time handed out"
    );
    assert!(next_id > 2, "and past every user id: {next_id}");
    say(&mut alice, "after".to_owned()).await;
    let hub = server.hub.clone();
    server.shutdown().await;
    let (lamport, _) = saved_counts(&file);
    assert_eq!(
        lamport,
        hub.clock().now(),
        "a clean stop saves the exact clock"
    );
}
