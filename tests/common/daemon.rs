//! The chittyd binary as a separate process, for what only a process has: signals, exit status,
//! standard output, sd_notify and journald.

use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, Command};

pub const PATIENCE: Duration = Duration::from_secs(10);

/// The chitty package's binaries. Cargo names a package's binaries (`CARGO_BIN_EXE_*`) to its own
/// tests only; chittyctl's tests share this helper but start chittyd in-process.
const CHITTYD: Option<&str> = option_env!("CARGO_BIN_EXE_chittyd");
const CHITTY: Option<&str> = option_env!("CARGO_BIN_EXE_chitty");

pub struct Daemon {
    pub child: Child,
    pub addr: String,
}

impl Daemon {
    /// Starts chittyd on an ephemeral port (logging to stderr) and reads the bound address
    /// from its log.
    pub async fn start(args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        Daemon::start_at("127.0.0.1:0", args, envs).await
    }

    /// Starts chittyd listening on `listen` (a fixed address survives a restart).
    pub async fn start_at(listen: &str, args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        let mut child =
            Command::new(CHITTYD.expect("chittyd is built for the chitty package's tests"))
                .args(["--listen", listen, "--log-target", "stderr"])
                .args(args)
                // Most tests send bursts; the tests of the rate limit pass --rate-limit themselves.
                .env("CHITTY_RATE_LIMIT", "0")
                .envs(envs.iter().copied())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("start chittyd");
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = stderr.next_line().await.unwrap() {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    return rest.trim().to_owned();
                }
            }
            panic!("chittyd exited before listening");
        })
        .await
        .expect("chittyd did not start");
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
        Daemon { child, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("chittyd already exited");
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// SIGTERM, then waits for a clean exit; returns what chittyd wrote to standard output.
    pub async fn stop(mut self) -> String {
        let mut stdout = self.child.stdout.take().unwrap();
        let reader = tokio::spawn(async move {
            let mut out = String::new();
            stdout.read_to_string(&mut out).await.unwrap();
            out
        });
        self.signal("TERM");
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("chittyd did not stop on SIGTERM")
            .unwrap();
        assert!(status.success(), "chittyd exited with {status}");
        reader.await.unwrap()
    }
}

/// Runs the real `chitty` with `args`, every stream piped.
pub fn chitty(args: &[&str]) -> Child {
    Command::new(CHITTY.expect("chitty is built for the chitty package's tests"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chitty")
}

/// Reads lines until one contains `needle`, and returns it; fails the test when the output
/// ends or nothing matches in time.
pub async fn wait_for_line(
    lines: &mut Lines<BufReader<impl AsyncRead + Unpin>>,
    needle: &str,
) -> String {
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("output ended before {needle:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {needle:?}"))
}
