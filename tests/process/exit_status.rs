//! chittyd's exit status when it cannot run: 78 (EX_CONFIG) for every configuration error,
//! which chitty.service does not restart on, and 1 for a failure that may pass, which it does.

use crate::{CHITTYD, root_or_skip};
use chitty_testkit::PATIENCE;
use std::process::Output;

/// Runs chittyd with `args` and extra environment until it exits.
async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(CHITTYD);
    cmd.args(args)
        .args(["--log-target", "stderr"])
        .env_remove("INVOCATION_ID")
        .env_remove("NOTIFY_SOCKET")
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(PATIENCE, cmd.output())
        .await
        .expect("chittyd kept running")
        .unwrap()
}

/// Arguments, environment, and what the message must say.
type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

#[tokio::test]
async fn every_configuration_error_exits_78_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "").unwrap();
    let file = file.to_str().unwrap();
    let missing = dir.path().join("missing");
    let missing = missing.to_str().unwrap();
    let audit_in_missing_dir = format!("{missing}/audit.log");
    let cases: Vec<Case> = vec![
        (vec!["--bogus"], vec![], "unexpected argument '--bogus'"),
        (
            vec!["--listen", "localhost"],
            vec![],
            "did you mean localhost:8080?",
        ),
        (
            vec![],
            vec![("CHITTY_MAX_FRAME", "lots")],
            "for '--max-frame <BYTES>' (from CHITTY_MAX_FRAME)",
        ),
        (vec!["--log", "chitty=["], vec![], "not a log filter"),
        (vec!["--tls-cert", "c.pem"], vec![], "--tls-key"),
        (
            vec!["--tls-cert", missing, "--tls-key", missing],
            vec![],
            "cannot read TLS certificate",
        ),
        (vec!["--admin-socket", file], vec![], "is not a socket"),
        (
            vec!["--audit-log", &audit_in_missing_dir],
            vec![],
            "cannot open audit log",
        ),
    ];
    for (args, env, why) in cases {
        let mut args = args.clone();
        if !args.contains(&"--admin-socket") {
            args.extend(["--admin-socket", "none"]);
        }
        args.extend(["--listen", "127.0.0.1:0"]);
        let out = run(&args, &env).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{args:?} {env:?}: {stderr}");
        assert!(
            stderr.contains("chittyd: configuration error: ") && stderr.contains(why),
            "{args:?} {env:?}: {stderr}"
        );
        assert!(!stderr.contains("not restarting"), "by hand: {stderr}");
    }
}

#[tokio::test]
async fn under_systemd_the_message_says_the_service_stays_down() {
    let out = run(
        &["--admin-socket", "none"],
        &[("CHITTY_LISTEN", "nowhere"), ("INVOCATION_ID", "0123")],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("(from CHITTY_LISTEN)")
            && stderr
                .contains("; not restarting until the configuration is fixed (exit status 78)"),
        "{stderr}"
    );
}

#[tokio::test]
async fn help_and_version_exit_0() {
    for flag in ["--help", "--version"] {
        let out = run(&[flag], &[]).await;
        assert_eq!(out.status.code(), Some(0), "{flag}");
        assert!(!out.stdout.is_empty(), "{flag}");
    }
}

#[tokio::test]
async fn a_port_in_use_may_pass_and_exits_1() {
    // What a restart meets while the previous process still holds the port.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let out = run(&["--listen", &addr, "--admin-socket", "none"], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(!stderr.contains("configuration error"), "{stderr}");
}

#[tokio::test]
async fn a_privileged_port_without_the_capability_is_a_configuration_error() {
    if !root_or_skip("running chittyd as another user (setpriv)") {
        return;
    }
    let out = tokio::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", CHITTYD])
        .args(["--listen", "127.0.0.1:1", "--admin-socket", "none"])
        .args(["--log-target", "stderr", "--audit-log", "none"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
}
