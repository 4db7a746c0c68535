//! `chitty` in a script: lines piped in are delivered at the pace the server allows, a refusal
//! shows in the exit status, and the server address means what a person expects.

use super::{chitty, next_line, stderr_lines, stdout_lines};
use crate::chittyd;
use chitty_testkit::PATIENCE;
use chitty_testkit::process::{Daemon, free_addr, wait_for_line as wait_for};
use tokio::io::AsyncWriteExt;

/// chittyd with the limits it ships with (the test helper turns the rate limit off).
async fn chittyd_with_default_limits() -> Daemon {
    chittyd()
        .env("CHITTY_RATE_LIMIT", "5")
        .env("CHITTY_RATE_BURST", "10")
        .env("CHITTY_FLOOD_LIMIT", "50")
        .start()
        .await
}

/// What `seq 1 N` writes.
fn seq(n: u32) -> String {
    (1..=n).map(|i| format!("{i}\n")).collect()
}

#[tokio::test]
async fn a_hundred_piped_lines_arrive_in_order_at_the_servers_pace() {
    let daemon = chittyd_with_default_limits().await;
    let dir = tempfile::tempdir().unwrap();
    let mut counter = chitty(&daemon.addr, "counter", &dir.path().join("counter.log"));
    let mut seen = stdout_lines(&mut counter);
    wait_for(&mut seen, "Participant counter joined").await;

    // `seq 1 100 | chitty chat -u bot`: all of it in the pipe at once, then the end of input.
    let mut bot = chitty(&daemon.addr, "bot", &dir.path().join("bot.log"));
    let mut bot_err = stderr_lines(&mut bot);
    let mut input = bot.stdin.take().unwrap();
    input.write_all(seq(100).as_bytes()).await.unwrap();
    drop(input);

    // 9 at once, then 5 a second: about 20 s, well within the wait for each line.
    let mut got = Vec::new();
    while got.len() < 100 {
        let line = next_line(&mut seen).await;
        if let Some((_, text)) = line.split_once("] bot: ") {
            got.push(text.parse::<u32>().expect("a number from seq"));
        }
    }
    assert_eq!(got, (1..=100).collect::<Vec<_>>());
    wait_for(&mut seen, "Participant bot left").await;
    let status = tokio::time::timeout(PATIENCE, bot.wait())
        .await
        .expect("bot left after its input ended")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    // Nothing refused, nothing said: a clean run writes nothing on standard error.
    let said = tokio::time::timeout(PATIENCE, bot_err.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(said, None);
    assert!(
        !daemon.log().iter().any(|l| l.contains("rate")),
        "{:?}",
        daemon.log()
    );

    drop(counter.stdin.take());
    assert!(counter.wait().await.unwrap().success());
    daemon.stop().await;
}

#[tokio::test]
async fn a_line_the_server_refuses_makes_the_exit_status_non_zero() {
    let daemon = chittyd_with_default_limits().await;
    let dir = tempfile::tempdir().unwrap();
    let mut bot = chitty(&daemon.addr, "bot", &dir.path().join("bot.log"));
    let mut out = stdout_lines(&mut bot);
    let mut input = bot.stdin.take().unwrap();
    let long = "x".repeat(200);
    input
        .write_all(format!("before\n{long}\nafter\n").as_bytes())
        .await
        .unwrap();
    drop(input);
    // The lines around the refused one are delivered.
    wait_for(&mut out, "] bot: before").await;
    wait_for(&mut out, "] bot: after").await;

    let result = tokio::time::timeout(PATIENCE, bot.wait_with_output())
        .await
        .expect("bot left")
        .unwrap();
    assert_eq!(
        result.status.code(),
        Some(5),
        "undelivered is exit status 5"
    );
    let err = String::from_utf8_lossy(&result.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            "chitty: refused: message is too long: 200 characters, at most 128 are allowed",
            "chitty: not everything was delivered: the server refused 1 of the messages sent \
             (see above)",
        ],
        "{err}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_host_without_a_port_means_port_8080() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("x.log");
    // chittyd on 8080 if this machine lets the test have it; otherwise the error names the
    // address tried, which shows the port all the same.
    let free = std::net::TcpListener::bind("127.0.0.1:8080")
        .map(drop)
        .is_ok();
    if free {
        let daemon = chittyd()
            .listen("127.0.0.1:8080")
            .args(["--admin-socket", "none"])
            .start()
            .await;
        for host in ["127.0.0.1", "http://127.0.0.1", "http://127.0.0.1/"] {
            let mut c = chitty(host, "portless", &log);
            let mut out = stdout_lines(&mut c);
            wait_for(&mut out, "Participant portless joined").await;
            drop(c.stdin.take());
            assert!(c.wait().await.unwrap().success(), "{host}");
        }
        daemon.stop().await;
    } else {
        let out = chitty("127.0.0.1", "portless", &log)
            .wait_with_output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("127.0.0.1:8080"), "{err}");
    }

    // Errors name the address and port actually tried.
    let nowhere = free_addr();
    let out = chitty(&format!("http://{nowhere}"), "x", &log)
        .wait_with_output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("chitty: cannot connect to {nowhere}: ")),
        "{err}"
    );
    let out = chitty(&format!("[::1]:{}", nowhere.port()), "x", &log)
        .wait_with_output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "chitty: cannot connect to [::1]:{}: ",
            nowhere.port()
        )),
        "{err}"
    );

    // An address that cannot be understood is a usage error, said before anything else.
    for (bad, says) in [
        ("localhost:http", "the port \"http\" is not a number"),
        ("ws://localhost", "does not speak ws://"),
    ] {
        let mut c = chitty(bad, "x", &log);
        drop(c.stdin.take());
        let out = c.wait_with_output().await.unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(bad) && err.contains(says), "{bad}: {err}");
    }
}
