//! chittyd as a process under the conditions systemd creates: the audit file across SIGTERM and
//! SIGHUP, sd_notify on a socket the test owns, journald's native protocol on a socket the
//! test owns (mounted at journald's path in a private mount namespace), and the admin socket
//! against a second chittyd started as another user.

mod common;

use common::Raw;
use common::daemon::{Daemon, PATIENCE};
use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

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
