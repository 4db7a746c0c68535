//! `--listen` and `--metrics-listen` in every accepted form, through the real chittyd: a port
//! alone, a host name (one that resolves to two addresses gets both), IPv4 and IPv6 literals,
//! and a wrong value that says which forms there are.

use crate::{CHITTYD, chittyd};
use chitty_testkit::{PATIENCE, Raw};
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Joins as `name` through the chat port at `addr`.
async fn joins(addr: SocketAddr, name: &str) {
    let mut p = Raw::open(&format!("http://{addr}")).await;
    p.send_join(name).await;
    p.until_joined(name).await;
}

/// chittyd on `listen`, with no admin socket or audit file.
async fn quiet_chittyd(listen: &str) -> chitty_testkit::process::Daemon {
    chittyd()
        .listen(listen)
        .args(["--admin-socket", "none", "--audit-log", "none"])
        .start()
        .await
}

/// The port of an address chittyd logged (`[::]:41234`).
fn port(logged: &str) -> u16 {
    logged
        .parse::<SocketAddr>()
        .unwrap_or_else(|e| panic!("{logged:?}: {e}"))
        .port()
}

#[tokio::test]
async fn listen_takes_a_port_a_host_name_and_both_kinds_of_literal() {
    // PORT and :PORT: every address, IPv4 and IPv6.
    for form in ["0", ":0", "[::]:0"] {
        let daemon = quiet_chittyd(form).await;
        assert!(daemon.addr.starts_with("[::]:"), "{form}: {}", daemon.addr);
        let port = port(&daemon.addr);
        joins(SocketAddr::from(([127, 0, 0, 1], port)), "four").await;
        joins(format!("[::1]:{port}").parse().unwrap(), "six").await;
        daemon.stop().await;
    }
    for (form, bound) in [
        ("0.0.0.0:0", "0.0.0.0:"),
        ("127.0.0.1:0", "127.0.0.1:"),
        ("[::1]:0", "[::1]:"),
        ("localhost:0", "127.0.0.1:"),
    ] {
        let daemon = quiet_chittyd(form).await;
        assert!(daemon.addr.starts_with(bound), "{form}: {}", daemon.addr);
        let ip = if bound == "[::1]:" {
            "[::1]"
        } else {
            "127.0.0.1"
        };
        let port = port(&daemon.addr);
        joins(format!("{ip}:{port}").parse().unwrap(), "alice").await;
        daemon.stop().await;
    }
}

#[tokio::test]
async fn metrics_listen_takes_the_same_forms() {
    let daemon = chittyd()
        .args(["--metrics-listen", "localhost:0", "--admin-socket", "none"])
        .start()
        .await;
    let line = daemon.until_log("Prometheus metrics on http://").await;
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("{line}"));
    let page = chitty_testkit::http::get(addr.parse().unwrap(), "/metrics", "").await;
    assert!(page.contains("chitty_"), "{page}");
    daemon.stop().await;
}

#[tokio::test]
async fn a_host_name_with_two_addresses_is_served_on_both() {
    if !crate::root_or_skip("a private /etc/hosts in a mount namespace") {
        return;
    }
    // A name of our own in a private /etc/hosts: 127.0.0.1 and ::1, as localhost usually is.
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 chitty-two\n::1 chitty-two\n").unwrap();
    let script = r#"mount --bind "$0" /etc/hosts && exec "$@""#;
    let mut child = tokio::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(&hosts)
        .arg(CHITTYD)
        .args(["--listen", "chitty-two:0", "--log-target", "stderr"])
        .args(["--admin-socket", "none", "--audit-log", "none"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("unshare (util-linux)");
    let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = chitty_testkit::process::wait_for_line(&mut log, "listening on").await;
    let listening = line.split("listening on ").nth(1).unwrap().trim();
    let addrs: Vec<SocketAddr> = listening
        .split(", ")
        .map(|a| a.parse().unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    assert_eq!(addrs.len(), 2, "both addresses of the name: {line}");
    assert_eq!(
        addrs[0].port(),
        addrs[1].port(),
        "one port for both: {line}"
    );
    let ips: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    assert!(ips.contains(&"127.0.0.1".to_owned()) && ips.contains(&"::1".to_owned()));
    for (n, addr) in addrs.into_iter().enumerate() {
        joins(addr, &format!("via{n}")).await;
    }
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(killed.unwrap().success());
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn a_wrong_listen_value_names_the_accepted_forms() {
    for (args, env) in [
        (vec!["--listen", "localhost"], None),
        (vec!["--listen", "::1:8080"], None),
        (vec!["--metrics-listen", "9100x"], None),
        (vec![], Some(("CHITTY_LISTEN", "80800"))),
    ] {
        let mut cmd = tokio::process::Command::new(CHITTYD);
        cmd.args(&args).args(["--log-target", "stderr"]);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(PATIENCE, cmd.output())
            .await
            .unwrap()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{args:?} {env:?}: {stderr}");
        assert!(
            stderr.contains("PORT, :PORT, HOST:PORT, IPv4:PORT or [IPv6]:PORT"),
            "{args:?} {env:?}: {stderr}"
        );
    }
}
