//! The admin socket between two chittyds: a live one is never taken over, not even by a chittyd
//! that cannot connect to it (started as another user); a stale one, from a crash, is replaced.

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
