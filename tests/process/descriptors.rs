//! Out of file descriptors: chittyd as its own process, its open-files limit lowered with
//! prlimit(1) so that a handful of connections exhausts it. It backs off, keeps serving those
//! already connected, and accepts again once descriptors are free.

use crate::CHITTYD;
use chitty::client::{Participant, ServerAddr};
use chitty::pb::chat_message::Kind;
use chitty_testkit::PATIENCE;
use chitty_testkit::process::{Daemon, DaemonCommand};
use tokio::net::TcpStream;

/// Sets both open-files limits of the running `chittyd` so that exactly `free` more descriptors
/// can be opened.
fn leave_free(chittyd: &Daemon, free: usize) {
    let pid = chittyd.pid();
    let open: Vec<usize> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The lowest free numbers are handed out: `limit` leaves `free` when exactly that many
    // numbers below it are unused.
    let limit = (1..)
        .find(|&limit| limit - open.iter().filter(|&&fd| fd < limit).count() == free)
        .unwrap();
    let ok = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok, "prlimit --pid failed");
}

/// Reads `p`'s messages until `text` from `from` arrives; returns what `from` said on the way,
/// in order.
async fn said_until(p: &mut Participant, from: &str, text: &str) -> Vec<String> {
    let mut said = Vec::new();
    loop {
        let m = tokio::time::timeout(PATIENCE, p.next())
            .await
            .expect("timed out")
            .expect("stream failed")
            .expect("stream ended");
        if m.kind == Kind::Message as i32 && m.username == from {
            said.push(m.message.clone());
            if m.message == text {
                return said;
            }
        }
    }
}

#[tokio::test]
async fn out_of_descriptors_it_backs_off_keeps_serving_and_recovers() {
    let chittyd = DaemonCommand::wrapped(CHITTYD, &["prlimit", "--nofile=64:256"])
        .args(["--audit-log", "none", "--admin-socket", "none"])
        .args(["--handshake-timeout", "1h"])
        .start()
        .await;
    let startup = chittyd.log();
    assert!(
        startup.iter().any(|l| l.contains("open-files limit: 256")),
        "the soft limit was not raised to the hard limit: {startup:?}"
    );
    let server = ServerAddr::plain(&chittyd.addr);
    let mut alice = Participant::join(&server, "alice").await.unwrap();
    let mut bob = Participant::join(&server, "bob").await.unwrap();

    leave_free(&chittyd, 2);
    // Two idle connections take the last descriptors; the rest wait in the backlog while
    // accept fails.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(&chittyd.addr).await.unwrap());
    }
    let line = chittyd.until_log("accept failed").await;
    assert!(line.contains("out of file descriptors"), "{line}");
    assert!(line.contains("backing off"), "{line}");

    // Those already connected keep chatting, in order.
    for i in 0..20 {
        alice.say(&format!("while full {i}")).await.unwrap();
    }
    let got = said_until(&mut bob, "alice", "while full 19").await;
    let want: Vec<_> = (0..20).map(|i| format!("while full {i}")).collect();
    assert_eq!(got, want);

    // Closing the idle connections frees descriptors: chittyd accepts again.
    drop(idle);
    let line = chittyd.until_log("accepting connections again").await;
    assert!(line.contains("failed accepts"), "{line}");
    let carol = Participant::join(&server, "carol").await.unwrap();
    carol.say("back").await.unwrap();
    said_until(&mut alice, "carol", "back").await;
    said_until(&mut bob, "carol", "back").await;
    drop((alice, bob, carol));
    chittyd.stop().await;
}

#[tokio::test]
async fn a_limit_below_what_max_participants_needs_is_warned_about_at_start() {
    let short = DaemonCommand::wrapped(CHITTYD, &["prlimit", "--nofile=200:200"])
        .args(["--max-participants", "1000"])
        .start()
        .await;
    let warning = short
        .until_log("below the 1064 descriptors that --max-participants 1000 needs")
        .await;
    assert!(warning.contains("open-files limit 200"), "{warning}");
    assert!(warning.contains("LimitNOFILE="), "{warning}");
    short.stop().await;

    let enough = DaemonCommand::wrapped(CHITTYD, &["prlimit", "--nofile=200:200"])
        .args(["--max-participants", "100"])
        .start()
        .await;
    // The limit line comes before "listening on", which start() waited for.
    assert!(
        enough
            .log()
            .iter()
            .any(|l| l.contains("open-files limit: 200")),
        "{:?}",
        enough.log()
    );
    assert!(
        !enough.log().iter().any(|l| l.contains("descriptors that")),
        "{:?}",
        enough.log()
    );
    enough.stop().await;
}
