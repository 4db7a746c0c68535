//! chittyd and chitty as processes, and what only a process has: signals and exit statuses, the
//! audit file across SIGTERM and SIGHUP and on a disk that fills up (a small tmpfs the test
//! mounts), sd_notify and journald on sockets the test owns, the admin socket against a second
//! chittyd started as another user, an open-files limit that runs out, the `chitty` client's
//! line mode, reconnects and exit codes, TLS from certificate files, and every form of --listen.

mod admin_socket;
mod cli;
mod descriptors;
mod exit_status;
mod full_disk;
mod listen;
mod signals;
mod systemd;
mod tls;

use chitty_testkit::process::{self, DaemonCommand};
use tokio::process::Child;

/// chittyd, as Cargo built it for these tests.
const CHITTYD: &str = env!("CARGO_BIN_EXE_chittyd");

/// chittyd on an ephemeral port, logging to standard error, no rate limit.
fn chittyd() -> DaemonCommand {
    DaemonCommand::new(CHITTYD)
}

/// Runs the real `chitty` with `args`, every stream piped.
fn chitty(args: &[&str]) -> Child {
    process::spawn(env!("CARGO_BIN_EXE_chitty"), args)
}

use chitty_testkit::process::root_or_skip;
