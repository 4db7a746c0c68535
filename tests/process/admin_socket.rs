//! The admin socket between two chittyds: a live one is never taken over, not even by a chittyd
//! that cannot connect to it (started as another user); a stale one, from a crash, is replaced.
//! Run by hand: as a user, the socket goes to $XDG_RUNTIME_DIR; as root, nothing is left in /run;
//! a start that fails after binding it removes it.

use crate::{CHITTYD, chittyd, root_or_skip};
use chitty::pb::admin::ClockRequest;
use chitty_testkit::{PATIENCE, admin};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// Asks the chittyd on the admin socket at `path` for its clock.
async fn admin_clock(path: &Path) -> Result<u64, String> {
    let mut client = admin::client(path)
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let clock = client
        .clock(ClockRequest {})
        .await
        .map_err(|e| format!("Clock: {e}"))?;
    Ok(clock.into_inner().lamport)
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
    let first = chittyd()
        .args(["--admin-socket", socket_arg, "--audit-log", "none"])
        .start()
        .await;
    let inode = std::fs::metadata(&socket).unwrap().ino();
    admin_clock(&socket)
        .await
        .expect("the first chittyd answers");

    // The socket is 0660 root:root, so nobody (65534) gets EACCES connecting to it.
    let second = tokio::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(CHITTYD)
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
    let daemon = chittyd()
        .args(["--admin-socket", socket.to_str().unwrap()])
        .args(["--audit-log", "none"])
        .start()
        .await;
    admin_clock(&socket)
        .await
        .expect("chittyd replaced the stale socket and answers on it");
    daemon.stop().await;
    assert!(!socket.exists(), "removed at exit");
}

/// chittyd by hand in a mount namespace whose /run is an empty tmpfs (after `setup`, a shell
/// snippet), so the machine's /run is neither used nor changed. When it exits, what is left in
/// that /run is listed on standard output (`USER PATH` lines), before the namespace goes.
struct PrivateRun {
    child: tokio::process::Child,
    pid: u32,
    /// chittyd's log up to its "listening on" line (the admin socket is bound by then).
    early: Vec<String>,
    log: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
}

impl PrivateRun {
    async fn start(setup: &str, prefix: &[&str], env: &[(&str, &str)]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!(
            r#"mount -t tmpfs -o mode=755 tmpfs /run && {setup}
            "$@" & pid=$!; echo $pid >"$0"; wait $pid; status=$?
            find /run -mindepth 1 -printf '%u %p\n'; exit $status"#
        );
        let mut cmd = tokio::process::Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .arg(&pidfile)
            .args(prefix)
            .arg(CHITTYD)
            .args(["--listen", "127.0.0.1:0", "--log-target", "stderr"])
            .args(["--audit-log", "none"])
            .env_remove("XDG_RUNTIME_DIR")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("unshare (util-linux)");
        let mut log = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut early = Vec::new();
        loop {
            let line = chitty_testkit::process::wait_for_line(&mut log, "").await;
            early.push(line);
            if early.last().is_some_and(|l| l.contains("listening on")) {
                break;
            }
        }
        let pid = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        PrivateRun {
            child,
            pid,
            early,
            log,
        }
    }

    /// SIGTERM to chittyd; returns what was left in /run.
    async fn stop(self) -> String {
        let term = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        assert!(term.unwrap().success());
        let out = tokio::time::timeout(PATIENCE, self.child.wait_with_output())
            .await
            .expect("chittyd did not stop")
            .unwrap();
        assert!(out.status.success(), "{}", out.status);
        drop(self.log);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[tokio::test]
async fn by_hand_as_root_nothing_is_left_in_run() {
    if !root_or_skip("a private /run in a mount namespace") {
        return;
    }
    let run = PrivateRun::start("", &[], &[]).await;
    // The namespace's /run, seen from outside through chittyd's root.
    let socket = format!("/proc/{}/root/run/chitty/admin.sock", run.pid);
    let meta = std::fs::metadata(&socket).expect("the default admin socket");
    assert_eq!(meta.uid(), 0, "root's socket");
    admin_clock(Path::new(&socket)).await.expect("it answers");
    let left = run.stop().await;
    assert_eq!(
        left, "",
        "chittyd created /run/chitty and removed it with its socket"
    );

    // A /run/chitty that was there before (systemd's RuntimeDirectory=) stays; the socket goes.
    let run = PrivateRun::start("mkdir /run/chitty &&", &[], &[]).await;
    let left = run.stop().await;
    assert_eq!(left, "root /run/chitty\n");
}

#[tokio::test]
async fn by_hand_as_a_user_the_admin_socket_goes_to_the_runtime_directory() {
    if !root_or_skip("running chittyd as another user (setpriv)") {
        return;
    }
    // nobody's own runtime directory, as pam_systemd makes /run/user/UID.
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let runtime = home.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    std::os::unix::fs::chown(&runtime, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let run = PrivateRun::start(
        "",
        &nobody,
        &[("XDG_RUNTIME_DIR", runtime.to_str().unwrap())],
    )
    .await;
    let socket = runtime.join("chitty/admin.sock");
    let instead = format!("using {} instead", socket.display());
    assert!(
        run.early.iter().any(|l| l.contains(&instead)),
        "{:?}",
        run.early
    );
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (65534, 0o660));
    admin_clock(&socket).await.expect("it answers");
    let left = run.stop().await;
    assert_eq!(left, "", "nothing in /run");
    assert!(
        !runtime.join("chitty").exists(),
        "socket and directory removed"
    );
    assert!(runtime.exists());
}

#[tokio::test]
async fn a_failed_start_leaves_no_admin_socket_behind() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("made/admin.sock");
    // The metrics port is bound after the admin socket; a busy one makes the start fail.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = tokio::process::Command::new(CHITTYD)
        .args(["--listen", "127.0.0.1:0", "--log-target", "stderr"])
        .arg("--admin-socket")
        .arg(&socket)
        .args(["--metrics-listen", &busy.local_addr().unwrap().to_string()])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("metrics endpoint"), "{stderr}");
    assert!(
        !dir.path().join("made").exists(),
        "socket and directory removed"
    );
}
