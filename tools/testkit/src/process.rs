//! chittyd and chitty as processes, for what only a process has: signals, exit status, standard
//! output, resource limits, sd_notify and journald. The test passes the binaries' paths
//! (`env!("CARGO_BIN_EXE_chittyd")`): Cargo names them to the package's own tests only.

use crate::PATIENCE;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, Command};

/// How to start chittyd: the binary, perhaps under a wrapper (prlimit, setpriv), its arguments
/// and environment. By default it listens on 127.0.0.1:0, logs to standard error and has no
/// per-session rate limit (most tests send bursts; the tests of the limit set it).
pub struct DaemonCommand {
    command: Command,
    listen: String,
}

impl DaemonCommand {
    /// chittyd at `program`.
    pub fn new(program: impl AsRef<OsStr>) -> DaemonCommand {
        DaemonCommand::wrapped(program, &[])
    }

    /// chittyd at `program`, started by `wrapper` (a command and its arguments, which runs the
    /// rest of its command line, as `prlimit --nofile=64:256` does): the wrapper's process
    /// becomes chittyd's.
    pub fn wrapped(program: impl AsRef<OsStr>, wrapper: &[&str]) -> DaemonCommand {
        let mut command = match wrapper.split_first() {
            None => Command::new(program.as_ref()),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program.as_ref());
                c
            }
        };
        command.env("CHITTY_RATE_LIMIT", "0");
        DaemonCommand {
            command,
            listen: "127.0.0.1:0".to_owned(),
        }
    }

    /// Listens on `addr` (a fixed address survives a restart).
    pub fn listen(mut self, addr: impl Into<String>) -> DaemonCommand {
        self.listen = addr.into();
        self
    }

    /// Adds command-line arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> DaemonCommand {
        self.command.args(args);
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> DaemonCommand {
        self.command.env(key, value);
        self
    }

    /// Starts chittyd and reads its log up to the line that names the bound address.
    pub async fn start(mut self) -> Daemon {
        let mut child = self
            .command
            .args(["--listen", &self.listen, "--log-target", "stderr"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start chittyd");
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let addr = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = stderr.next_line().await.unwrap() {
                let listening = line.split("listening on ").nth(1).map(str::to_owned);
                log.lock().unwrap().push(line);
                if let Some(addr) = listening {
                    return addr.trim().to_owned();
                }
            }
            panic!("chittyd exited before listening: {:?}", log.lock().unwrap());
        })
        .await
        .expect("chittyd did not start");
        // Keep reading its log, so it never blocks on a full pipe, and keep it for the test.
        let kept = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                kept.lock().unwrap().push(line);
            }
        });
        Daemon { child, addr, log }
    }
}

/// A running chittyd process.
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// The address it listens on, as its log says it.
    pub addr: String,
    /// Every line it has logged so far.
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// The chat port as a gRPC endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("chittyd already exited")
    }

    /// Every line chittyd has logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until chittyd logs a line containing `needle`, and returns the first such line.
    pub async fn until_log(&self, needle: &str) -> String {
        let mut found = None;
        crate::time::wait_until(&format!("{needle:?} in chittyd's log"), || {
            found = self.log().into_iter().find(|l| l.contains(needle));
            found.is_some()
        })
        .await;
        found.unwrap()
    }

    /// Sends it signal `sig` (`"TERM"`, `"HUP"`, ...).
    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
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

/// Runs `program` (the real `chitty`, say) with `args`, every stream piped.
pub fn spawn(program: impl AsRef<OsStr>, args: &[&str]) -> Child {
    Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the program under test")
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

/// Whether a test that needs root may run: true as root; otherwise it fails, unless
/// CHITTY_SKIP_ROOT_TESTS=1 asks to skip what only root can set up (CI runs as root).
pub fn root_or_skip(what: &str) -> bool {
    // /proc/self belongs to the process's effective user.
    let euid = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata("/proc/self").expect("/proc is mounted"),
    );
    if euid == 0 {
        return true;
    }
    if std::env::var("CHITTY_SKIP_ROOT_TESTS").as_deref() == Ok("1") {
        eprintln!("skipped (CHITTY_SKIP_ROOT_TESTS=1): {what} needs root");
        return false;
    }
    panic!("{what} needs root; run the tests as root, or set CHITTY_SKIP_ROOT_TESTS=1 to skip it");
}

/// An address on 127.0.0.1 that nobody listens on now, for a server that must come back at the
/// same address, or for a client that must find nobody there.
pub fn free_addr() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe");
    probe.local_addr().unwrap()
}
