//! chittyctl, the real binary, against chittyd running in-process: the admin commands over a
//! real Unix socket, the Prometheus endpoint over HTTP, `chittyctl bench`, the load generator,
//! in small runs (over TLS too), and the certificates `chittyctl tls-cert` writes, served by
//! chittyd.

mod admin;
mod bench;
mod stats;
mod tls_cert;

use chitty::audit::AuditConfig;
use chitty::server::ServerConfig;
use chitty_testkit::{TestServer, config, start};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// chittyctl, as Cargo built it for these tests.
const CHITTYCTL: &str = env!("CARGO_BIN_EXE_chittyctl");

/// What a chittyctl run gave.
struct Ctl {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the real chittyctl against the admin socket at `socket`.
async fn chittyctl(socket: &Path, args: &[&str]) -> Ctl {
    chittyctl_as(socket, args, None).await
}

/// Runs the real chittyctl, optionally as another user (through util-linux's setpriv).
async fn chittyctl_as(socket: &Path, args: &[&str], uid: Option<u32>) -> Ctl {
    let mut cmd = match uid {
        None => tokio::process::Command::new(CHITTYCTL),
        Some(uid) => {
            let mut c = tokio::process::Command::new("setpriv");
            c.args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                CHITTYCTL,
            ]);
            c
        }
    };
    let out = cmd
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .await
        .expect("run chittyctl");
    Ctl {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The `--json` output of a run that must have succeeded.
fn json(ctl: &Ctl) -> serde_json::Value {
    assert_eq!(ctl.code, 0, "chittyctl failed: {}", ctl.stderr);
    serde_json::from_str(&ctl.stdout).unwrap_or_else(|e| panic!("{e}: {}", ctl.stdout))
}

/// A server with an admin socket in a directory anyone may enter (so permissions are decided
/// by the socket's own mode), an audit file, and a metrics port.
async fn server_with_admin() -> (TestServer, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let audit = dir.path().join("audit.log");
    let server = start(ServerConfig {
        admin_socket: Some(dir.path().join("admin.sock")),
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        audit: AuditConfig {
            file: Some(audit.clone()),
            ..AuditConfig::default()
        },
        ..config()
    })
    .await;
    (server, audit, dir)
}
