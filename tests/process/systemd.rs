//! chittyd under the conditions systemd creates: sd_notify on a socket the test owns, and
//! journald's native protocol on a socket the test owns, mounted at journald's path in a private
//! mount namespace.

use crate::{CHITTYD, chittyd};
use chitty_testkit::{PATIENCE, Raw};
use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

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
    let daemon = chittyd()
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "400000")
        .start()
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
        .arg(CHITTYD)
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
    // chittyd's own INFO lines are notices (5), as tracing-journald maps them; errors are 3.
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
    // Audit records are info (6), below notice: `journalctl -p notice` leaves them out.
    for record in &audit {
        assert_eq!(record["PRIORITY"], "6", "{record:?}");
    }
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
