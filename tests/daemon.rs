//! chittyd as a process under the conditions systemd creates: the audit file across SIGTERM and
//! SIGHUP, sd_notify on a socket the test owns, journald's native protocol on a socket the
//! test owns (mounted at journald's path in a private mount namespace), the audit file on a
//! disk that fills up (a small tmpfs the test mounts), and the admin socket against a second
//! chittyd started as another user.

mod common;

use common::Raw;
use common::daemon::{Daemon, PATIENCE};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing_subscriber::layer::SubscriberExt;

fn read_records(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every audit line is one JSON object"))
        .collect()
}

#[tokio::test]
async fn every_record_is_written_before_exit_on_sigterm() {
    const MESSAGES: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let daemon = Daemon::start(&["--audit-log", log.to_str().unwrap()], &[]).await;
    let mut alice = Raw::open(&daemon.url()).await;
    alice.send_join("alice").await;
    alice.until_joined("alice").await;
    for n in 0..MESSAGES {
        alice.say_as("alice", &format!("message {n}")).await;
    }
    alice
        .until(|m| m.message == format!("message {}", MESSAGES - 1))
        .await;
    daemon.stop().await;

    let records = read_records(&log);
    let count = |event: &str| records.iter().filter(|r| r["event"] == event).count();
    assert_eq!(count("message"), MESSAGES);
    assert_eq!(count("join"), 1);
    assert_eq!(count("shutdown"), 1);
    let leave = records
        .iter()
        .find(|r| r["event"] == "leave")
        .expect("alice's leave");
    assert_eq!(leave["reason"], "shutdown");
    let lamports: Vec<u64> = records
        .iter()
        .map(|r| r["lamport"].as_u64().unwrap())
        .collect();
    assert!(
        lamports.windows(2).all(|w| w[0] < w[1]),
        "records in Lamport order"
    );
    // Text only with --audit-text; the length always.
    let m = records.iter().find(|r| r["event"] == "message").unwrap();
    assert_eq!(m["len"], "message 0".len());
    assert!(m.get("text").is_none());
}

/// A WebSocket client of the real binary: its next JSON frame, or the close frame's code.
async fn ws_next(ws: &mut common::Ws) -> Result<serde_json::Value, u16> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a frame in time")
        {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(Some(f)))) => return Err(f.code.into()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn sigterm_closes_websocket_users_before_exit_within_the_grace() {
    use futures_util::StreamExt;
    let mut daemon =
        Daemon::start(&["--shutdown-grace", "2s", "--admin-socket", "none"], &[]).await;
    let connect = |query: &'static str| {
        let url = format!("ws://{}/{query}", daemon.addr);
        async move { tokio_tungstenite::connect_async(url).await.unwrap().0 }
    };
    let mut carol = connect("?username=carol").await;
    let mut dm = connect("").await;
    // Reads nothing and never answers the close: only the grace ends its connection.
    let _silent = connect("?username=silent").await;
    assert_eq!(ws_next(&mut carol).await.unwrap()["kind"], "join");
    assert_eq!(ws_next(&mut dm).await.unwrap()["kind"], "welcome");

    daemon.signal("TERM");
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "chittyd exited before its WebSocket users had their close"
    );
    for user in [&mut carol, &mut dm] {
        let last = loop {
            let frame = ws_next(user).await.expect("the notice before the close");
            if frame["kind"] != "join" {
                break frame;
            }
        };
        assert_eq!(last["kind"], "shutdown", "{last}");
        assert_eq!(ws_next(user).await, Err(1000));
        assert!(
            user.next().await.is_none(),
            "the connection ends after the close"
        );
    }
    let status = tokio::time::timeout(PATIENCE, daemon.child.wait())
        .await
        .expect("chittyd did not exit")
        .unwrap();
    assert!(status.success(), "chittyd exited with {status}");
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "chittyd should wait for the silent user up to the 2 s grace, then close it: {took:?}"
    );
}

#[tokio::test]
async fn sighup_reopens_the_audit_file_for_logrotate() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let rotated = dir.path().join("audit.log.1");
    let daemon = Daemon::start(&["--audit-log", log.to_str().unwrap(), "--audit-text"], &[]).await;
    let mut alice = Raw::open(&daemon.url()).await;
    alice.send_join("alice").await;
    alice.until_joined("alice").await;
    alice.say_as("alice", "before rotation").await;
    alice.until(|m| m.message == "before rotation").await;
    // logrotate's move-then-signal.
    let deadline = Instant::now() + PATIENCE;
    while !read_records(&log)
        .iter()
        .any(|r| r["text"] == "before rotation")
    {
        assert!(Instant::now() < deadline, "record never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::rename(&log, &rotated).unwrap();
    daemon.signal("HUP");
    // The reopen is asynchronous: keep talking until a message lands in the new file.
    let deadline = Instant::now() + PATIENCE;
    let mut n = 0;
    loop {
        n += 1;
        let text = format!("after rotation {n}");
        alice.say_as("alice", &text).await;
        alice.until(|m| m.message == text).await;
        if read_records(&log).iter().any(|r| r["event"] == "message") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new file never received records"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.stop().await;
    let old = read_records(&rotated);
    let new = read_records(&log);
    assert!(old.iter().any(|r| r["text"] == "before rotation"));
    assert!(new.iter().all(|r| r["text"] != "before rotation"));
    assert!(
        new.iter().any(|r| r["event"] == "shutdown"),
        "the rest went to the new file"
    );
    // Nothing lost across the rotation: every message is in one file or the other.
    let all_texts: Vec<_> = old
        .iter()
        .chain(&new)
        .filter_map(|r| r["text"].as_str())
        .collect();
    for i in 1..=n {
        assert!(all_texts.contains(&format!("after rotation {i}").as_str()));
    }
}

/// Receives sd_notify datagrams on a socket the test owns.
struct NotifySocket {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    path: String,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        NotifySocket {
            socket,
            path: path.to_str().unwrap().to_owned(),
            _dir: dir,
        }
    }

    /// The next datagram as KEY=VALUE pairs.
    fn next(&self) -> HashMap<String, String> {
        let mut buf = vec![0; 4096];
        let n = self
            .socket
            .recv(&mut buf)
            .expect("no sd_notify message in time");
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sd_notify_ready_status_watchdog_and_stopping() {
    let notify = NotifySocket::new();
    let daemon = Daemon::start(
        &[],
        &[
            ("NOTIFY_SOCKET", notify.path.as_str()),
            ("WATCHDOG_USEC", "400000"),
        ],
    )
    .await;
    let ready = tokio::task::block_in_place(|| notify.next());
    assert_eq!(
        ready.get("READY").map(String::as_str),
        Some("1"),
        "{ready:?}"
    );
    let status = &ready["STATUS"];
    let addr = status
        .strip_prefix("listening on ")
        .and_then(|s| s.split(';').next())
        .unwrap_or_else(|| panic!("STATUS names the address: {status}"));
    // READY=1 came only once the port accepts connections.
    tokio::net::TcpStream::connect(addr)
        .await
        .expect("the port accepts connections when READY=1 arrives");
    assert_eq!(addr, daemon.addr);

    let mut alice = Raw::open(&daemon.url()).await;
    alice.send_join("alice").await;
    alice.until_joined("alice").await;
    // Watchdog pings at half of WATCHDOG_USEC, each with a fresh STATUS.
    let started = Instant::now();
    let mut pings = 0;
    let mut saw_alice = false;
    while pings < 3 || !saw_alice {
        let msg = tokio::task::block_in_place(|| notify.next());
        if msg.get("WATCHDOG").map(String::as_str) == Some("1") {
            pings += 1;
        }
        if msg
            .get("STATUS")
            .is_some_and(|s| s.contains("participants: 1"))
        {
            saw_alice = true;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{pings} pings, alice seen: {saw_alice}"
        );
    }
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "pings come at about half the watchdog period, not in a burst"
    );

    let stopping = tokio::spawn(async move {
        tokio::task::block_in_place(|| {
            loop {
                let msg = notify.next();
                if msg.contains_key("STOPPING") {
                    return msg;
                }
            }
        })
    });
    daemon.stop().await;
    let msg = stopping.await.unwrap();
    assert_eq!(msg["STOPPING"], "1");
}

/// Parses one datagram of journald's native protocol into its fields.
fn journal_fields(datagram: &[u8]) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = &rest[..line_end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            let key = String::from_utf8_lossy(&line[..eq]).into_owned();
            fields.insert(key, String::from_utf8_lossy(&line[eq + 1..]).into_owned());
            rest = &rest[(line_end + 1).min(rest.len())..];
        } else {
            // KEY\n<u64 LE length><value>\n
            let key = String::from_utf8_lossy(line).into_owned();
            let after = &rest[line_end + 1..];
            let len = u64::from_le_bytes(after[..8].try_into().unwrap()) as usize;
            let value = &after[8..8 + len];
            fields.insert(key, String::from_utf8_lossy(value).into_owned());
            rest = &after[(8 + len + 1).min(after.len())..];
        }
    }
    fields
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_records_become_structured_journal_entries() {
    // A private mount namespace shows chittyd our socket at journald's path, without touching
    // the machine's /run.
    let dir = tempfile::tempdir().unwrap();
    let journal = UnixDatagram::bind(dir.path().join("socket")).unwrap();
    journal.set_read_timeout(Some(PATIENCE)).unwrap();
    let script = r#"mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal &&
        mount --bind "$0" /run/systemd/journal && exec "$@""#;
    let mut child = tokio::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(dir.path())
        .arg(env!("CARGO_BIN_EXE_chittyd"))
        .args(["--listen", "127.0.0.1:0", "--log-target", "journal"])
        .kill_on_drop(true)
        .spawn()
        .expect("unshare (util-linux) runs chittyd in a private mount namespace");

    let recv = |journal: &UnixDatagram| {
        let mut buf = vec![0; 64 * 1024];
        let n = journal
            .recv(&mut buf)
            .expect("a journal entry (is unshare allowed to mount? tests run as root)");
        journal_fields(&buf[..n])
    };
    let mut entries = Vec::new();
    let addr = loop {
        let e = tokio::task::block_in_place(|| recv(&journal));
        let found = e
            .get("MESSAGE")
            .and_then(|m| m.strip_prefix("chittyd listening on "))
            .map(str::to_owned);
        entries.push(e);
        if let Some(addr) = found {
            break addr;
        }
    };
    let startup = entries.last().unwrap();
    // tracing-journald maps INFO to "notice" (5); errors map to 3.
    assert_eq!(startup["PRIORITY"], "5", "startup is a notice: {startup:?}");
    assert_eq!(startup["SYSLOG_IDENTIFIER"], "chittyd");

    let mut alice = Raw::open(&format!("http://{addr}")).await;
    alice.send_join("alice").await;
    alice.until_joined("alice").await;
    alice.say_as("alice", "hi").await;
    alice.until(|m| m.message == "hi").await;
    alice.say_as("alice", "").await;
    alice.until(|m| m.message.contains("empty")).await;

    let mut audit = Vec::new();
    while audit.len() < 3 {
        let e = tokio::task::block_in_place(|| recv(&journal));
        if e.contains_key("CHITTY_EVENT") {
            audit.push(e);
        }
    }
    let join = &audit[0];
    assert_eq!(join["CHITTY_EVENT"], "join");
    assert_eq!(join["CHITTY_USER"], "alice");
    assert_eq!(join["CHITTY_TRANSPORT"], "grpc");
    assert!(join["CHITTY_LAMPORT"].parse::<u64>().is_ok(), "{join:?}");
    assert!(join["CHITTY_SESSION"].parse::<u64>().is_ok());
    assert!(join.contains_key("CHITTY_PEER"));
    assert!(
        join["MESSAGE"].contains("join alice"),
        "a readable MESSAGE: {join:?}"
    );
    assert!(
        !join.contains_key("CHITTY_TEXT"),
        "absent fields are left out"
    );
    let message = &audit[1];
    assert_eq!(message["CHITTY_EVENT"], "message");
    assert_eq!(message["CHITTY_LEN"], "2");
    let reject = &audit[2];
    assert_eq!(reject["CHITTY_EVENT"], "reject");
    assert!(reject["CHITTY_REASON"].contains("empty"), "{reject:?}");
    let lamport = |e: &HashMap<String, String>| e["CHITTY_LAMPORT"].parse::<u64>().unwrap();
    assert!(lamport(join) < lamport(message) && lamport(message) < lamport(reject));

    let pid = child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

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
    .expect("the only test in this binary that logs in-process");
    let path = disk.path().join("audit.log");
    let mut config = common::config();
    config.audit.file = Some(path.clone());
    config.audit.text = true;
    // AuditConfig::default() has a queue of one; chittyd's own default is what is tested.
    config.audit.queue = chitty::audit::DEFAULT_QUEUE;
    let server = common::start(config).await;
    let mut alice = server.join("alice").await;
    let say = async |alice: &mut Raw, text: String| {
        alice.say_as("alice", &text).await;
        alice.until(|m| m.message == text).await;
    };
    for n in 0..BEFORE {
        say(&mut alice, format!("before {n}")).await;
    }
    let deadline = Instant::now() + PATIENCE;
    while read_records(&path)
        .iter()
        .filter(|r| r["event"] == "message")
        .count()
        < BEFORE
    {
        assert!(Instant::now() < deadline, "records never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

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
    let deadline = Instant::now() + PATIENCE;
    while audit.written() + audit.lost() < tried {
        assert!(
            Instant::now() < deadline,
            "the writer never got through the records"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    std::fs::remove_file(&filler).unwrap();
    for n in 0..AFTER {
        say(&mut alice, format!("after {n}")).await;
    }
    let (lost, dropped) = (audit.lost(), audit.dropped());
    server.shutdown().await;

    let records = read_records(&path);
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

/// Asks the chittyd on the admin socket at `path` for its clock, through the generated admin
/// client over the Unix socket.
async fn admin_clock(path: &Path) -> Result<u64, String> {
    use chitty::pb::admin::{ClockRequest, admin_client::AdminClient};
    let socket = path.to_owned();
    let channel = tonic::transport::Endpoint::from_static("http://chittyd.admin")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let socket = socket.clone();
            async move {
                tokio::net::UnixStream::connect(socket)
                    .await
                    .map(hyper_util::rt::TokioIo::new)
            }
        }))
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let clock = AdminClient::new(channel)
        .clock(ClockRequest {})
        .await
        .map_err(|e| format!("Clock: {e}"))?;
    Ok(clock.into_inner().lamport)
}

/// Whether this test may run: true as root; otherwise it fails, unless CHITTY_SKIP_ROOT_TESTS=1
/// asks to skip what only root can set up (CI runs as root).
fn root_or_skip(what: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var("CHITTY_SKIP_ROOT_TESTS").as_deref() == Ok("1") {
        eprintln!("skipped (CHITTY_SKIP_ROOT_TESTS=1): {what} needs root");
        return false;
    }
    panic!("{what} needs root; run the tests as root, or set CHITTY_SKIP_ROOT_TESTS=1 to skip it");
}

#[tokio::test]
async fn a_live_admin_socket_is_not_taken_over_by_a_chittyd_that_cannot_connect() {
    if !root_or_skip("starting a second chittyd as another user (setpriv)") {
        return;
    }
    // A directory anyone may write to, without the sticky bit: anyone could remove the socket.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = dir.path().join("admin.sock");
    let socket_arg = socket.to_str().unwrap();
    let first = Daemon::start(&["--admin-socket", socket_arg, "--audit-log", "none"], &[]).await;
    let inode = std::fs::metadata(&socket).unwrap().ino();
    admin_clock(&socket)
        .await
        .expect("the first chittyd answers");

    // The socket is 0660 root:root, so nobody (65534) gets EACCES connecting to it.
    let second = tokio::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_chittyd"))
        .args(["--listen", "127.0.0.1:0", "--log-target", "stderr"])
        .args(["--admin-socket", socket_arg, "--audit-log", "none"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start setpriv (util-linux)");
    let out = tokio::time::timeout(PATIENCE, second.wait_with_output())
        .await
        .expect("the second chittyd kept running: it took the socket over")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the second chittyd must fail: {stderr}"
    );
    assert!(stderr.contains(socket_arg), "names the socket: {stderr}");
    assert!(stderr.contains("Permission denied"), "says why: {stderr}");

    let meta = std::fs::symlink_metadata(&socket).expect("the socket is still there");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.ino(), inode, "the same socket, not a replacement");
    admin_clock(&socket)
        .await
        .expect("the first chittyd still answers on its admin socket");
    first.stop().await;
}

#[tokio::test]
async fn a_stale_admin_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    // What a crash leaves: the file of a socket nobody listens on any more.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(admin_clock(&socket).await.is_err(), "nobody answers yet");
    let daemon = Daemon::start(
        &[
            "--admin-socket",
            socket.to_str().unwrap(),
            "--audit-log",
            "none",
        ],
        &[],
    )
    .await;
    admin_clock(&socket)
        .await
        .expect("chittyd replaced the stale socket and answers on it");
    daemon.stop().await;
    assert!(!socket.exists(), "removed at exit");
}
