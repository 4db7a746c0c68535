//! The full-screen client as a person uses it: the real `chitty` binary in a real terminal (a
//! tmux pane), typed at with `send-keys` and read with `capture-pane`, against chittyd.
//!
//! Each pane runs a small shell script that records the terminal's settings (`stty -g`) before
//! and after chitty, and chitty's exit code, so the tests can check that the terminal comes back
//! exactly as it was. tmux keeps a dead pane on screen (`remain-on-exit`) so what chitty printed
//! on its way out can be read too.

mod common;

use chitty::server::{Server, ServerConfig};
use common::{PATIENCE, TestServer, start_default};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// How often a waiting test looks at the screen again.
const POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// A tmux server of the test's own, on a socket in a temporary folder.
struct Tmux {
    dir: tempfile::TempDir,
}

impl Tmux {
    fn new() -> Tmux {
        let found = std::process::Command::new("tmux").arg("-V").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "these tests run chitty in tmux: install it (apt-get install tmux; .ci/run does)"
        );
        Tmux {
            dir: tempfile::tempdir().expect("temporary folder"),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S")
            .arg(self.dir.path().join("sock"))
            .args(["-f", "/dev/null"])
            .env_remove("TMUX")
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().await.expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Opens a 100×30 pane running `chitty chat ARGS` against `server`.
    async fn chitty(&self, name: &str, server: &TestServer, args: &[&str]) -> Pane<'_> {
        let dir = self.dir.path().join(name);
        std::fs::create_dir(&dir).expect("pane folder");
        let mut line = format!(
            "'{}' chat -H {} --log '{}'",
            env!("CARGO_BIN_EXE_chitty"),
            server.addr,
            dir.join("chitty.log").display()
        );
        for arg in args {
            line.push_str(&format!(" '{arg}'"));
        }
        let script = format!(
            "cd '{dir}'\nstty -g > before\n{line}\ncode=$?\nstty -g > after\n\
             echo $code > code.tmp && mv code.tmp code\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("run.sh"), script).expect("write the pane's script");
        let run = format!("sh '{}'", dir.join("run.sh").display());
        let start = [
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "100",
            "-y",
            "30",
            &run,
        ];
        if self.dir.path().join("sock").exists() {
            self.run(&start).await;
        } else {
            // The first pane starts the server; remain-on-exit must be on before any pane can
            // end, so it is set in the same breath.
            let mut args = vec![
                "start-server",
                ";",
                "set-option",
                "-g",
                "remain-on-exit",
                "on",
            ];
            args.push(";");
            args.extend(start);
            self.run(&args).await;
        }
        Pane {
            tmux: self,
            target: format!("{name}:0.0"),
            dir,
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Ends every pane's chitty with the server, even when a test failed halfway.
        let _ = std::process::Command::new("tmux")
            .arg("-S")
            .arg(self.dir.path().join("sock"))
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

/// One tmux pane with chitty in it.
struct Pane<'a> {
    tmux: &'a Tmux,
    target: String,
    dir: PathBuf,
}

impl Pane<'_> {
    /// Types text as it is.
    async fn type_text(&self, text: &str) {
        self.tmux
            .run(&["send-keys", "-t", &self.target, "-l", text])
            .await;
    }

    /// Pastes text the way a terminal does, bracketed when the program asked for it.
    async fn paste(&self, text: &str) {
        self.tmux.run(&["set-buffer", "--", text]).await;
        self.tmux
            .run(&["paste-buffer", "-p", "-d", "-t", &self.target])
            .await;
    }

    /// Presses keys by tmux's names for them (Enter, Left, Home, BSpace, DC, Escape, C-c…).
    async fn press(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.target];
        args.extend(keys);
        self.tmux.run(&args).await;
    }

    /// What the pane shows, with the normal screen's scrolled-off lines above it (tmux scrolls
    /// the screen by one line to say a pane is dead).
    async fn screen(&self) -> String {
        self.tmux
            .run(&["capture-pane", "-p", "-S", "-", "-t", &self.target])
            .await
    }

    async fn format(&self, what: &str) -> String {
        let out = self
            .tmux
            .run(&["display-message", "-p", "-t", &self.target, what])
            .await;
        out.trim().to_owned()
    }

    /// Waits until the screen shows `needle`; returns the screen.
    async fn wait_for(&self, needle: &str) -> String {
        self.wait_until(needle, |screen| screen.contains(needle))
            .await
    }

    /// Waits until the screen satisfies `ok`, which `what` describes; returns the screen.
    async fn wait_until(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let screen = self.screen().await;
            if ok(&screen) {
                return screen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the screen never showed {what:?}; it shows:\n{screen}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The status line: the row that shows the server's address first.
    async fn status(&self, server: &TestServer) -> String {
        let prefix = format!(" {} | ", server.addr);
        let screen = self.screen().await;
        screen
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no status line in:\n{screen}"))
            .to_owned()
    }

    /// Waits for chitty to exit; returns its exit code, after checking that the terminal's
    /// settings are back to what they were and the alternate screen is left.
    async fn exit_code(&self) -> i32 {
        let code = self.dir.join("code");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !code.exists() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "chitty did not exit; the screen shows:\n{}",
                self.screen().await
            );
            tokio::time::sleep(POLL).await;
        }
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap();
        assert_eq!(
            read("before"),
            read("after"),
            "terminal settings not restored"
        );
        assert_eq!(
            self.format("#{alternate_on}").await,
            "0",
            "still on the alternate screen"
        );
        read("code").trim().parse().unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("chitty.log")).unwrap_or_default()
    }
}

/// A line-mode `chitty` with pipes for standard input and output: line mode by itself.
fn line_mode(server: &TestServer, name: &str) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chitty"))
        .args([
            "chat",
            "--no-log",
            "-u",
            name,
            "-H",
            &server.addr.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chitty");
    let out = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, out)
}

async fn read_until(lines: &mut Lines<BufReader<ChildStdout>>, needle: &str) -> String {
    common::daemon::wait_for_line(lines, needle).await
}

/// The id after `name #` in a status line.
fn id_of(status: &str, name: &str) -> u64 {
    let rest = status.split(&format!("{name} #")).nth(1).unwrap_or("");
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no id for {name} in {status:?}"))
}

fn log_has(log: &str, ending: &str) -> bool {
    log.lines()
        .any(|l| l.starts_with("L[") && l.ends_with(ending))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_chats_full_screen_with_a_line_mode_client() {
    let server = start_default().await;
    let tmux = Tmux::new();
    let alice = tmux.chitty("alice", &server, &["-u", "alice"]).await;
    alice.wait_for("Participant alice joined").await;
    assert_eq!(alice.format("#{alternate_on}").await, "1", "full screen");

    let (mut bob, mut bob_out) = line_mode(&server, "bob");
    read_until(&mut bob_out, "Participant bob joined").await;
    alice.wait_for("Participant bob joined").await;

    // Typing with the editing keys, over multi-byte text.
    alice.type_text("hello bob, héllo wörld").await;
    alice
        .press(&["Left", "Left", "Left", "Left", "Left", "DC"])
        .await;
    alice.type_text("W").await;
    alice.press(&["Home"]).await;
    alice.type_text("» ").await;
    alice.press(&["End", "Enter"]).await;
    let got = read_until(&mut bob_out, "hello bob").await;
    assert!(got.ends_with("] alice: » hello bob, héllo Wörld"), "{got}");

    // Up recalls the line; Enter sends it again.
    alice.press(&["Up", "Enter"]).await;
    read_until(&mut bob_out, "alice: » hello bob, héllo Wörld").await;

    // A pasted paragraph is one message, not one per line.
    alice.paste("pasted\nparagraph").await;
    alice.press(&["Enter"]).await;
    let got = read_until(&mut bob_out, "pasted").await;
    assert!(got.ends_with("] alice: pasted paragraph"), "{got}");

    let mut bob_in = bob.stdin.take().unwrap();
    bob_in.write_all(b"hi alice\n").await.unwrap();
    let screen = alice.wait_for("bob: hi alice").await;
    assert!(
        screen.contains("] alice: » hello bob, héllo Wörld"),
        "{screen}"
    );

    let status = alice.status(&server).await;
    let id = id_of(&status, "alice");
    assert!(status.contains(" | connected | alice #"), "{status}");
    assert!(status.contains(" | 2 online"), "{status}");
    assert!(status.contains(" | L"), "{status}");

    // A direct message is marked, with its sender.
    bob_in
        .write_all(format!("/msg {id} just for you\n").as_bytes())
        .await
        .unwrap();
    let screen = alice.wait_for("-> you: just for you").await;
    let line = screen.lines().find(|l| l.contains("just for you")).unwrap();
    assert!(
        line.starts_with("[L") && line.contains("] [direct] bob #"),
        "{line}"
    );

    // The server's refusal and the commands answer in the pane.
    alice.type_text(&"x".repeat(130)).await;
    alice.press(&["Enter"]).await;
    alice
        .wait_for("! message is too long: 130 characters, at most 128 are allowed")
        .await;
    alice.type_text("/users").await;
    alice.press(&["Enter"]).await;
    alice
        .wait_for("Seen since you joined: alice #1, bob #2 (2 online in all).")
        .await;

    // A narrower terminal wraps the messages again, between words.
    tmux.run(&["resize-window", "-t", "alice", "-x", "30", "-y", "20"])
        .await;
    alice
        .wait_until("the message wrapped at 30 columns", |screen| {
            screen.lines().any(|l| l.trim_end() == "héllo Wörld")
        })
        .await;
    assert!(alice.status(&server).await.contains(" | connected"));

    // Esc leaves: bob sees it, and the terminal is as it was.
    alice.press(&["Escape"]).await;
    read_until(&mut bob_out, "Participant alice left").await;
    assert_eq!(alice.exit_code().await, 0);

    let log = alice.log();
    assert!(
        log_has(&log, "] @ alice: » hello bob, héllo Wörld"),
        "{log}"
    );
    assert!(log_has(&log, "] @ bob: hi alice"), "{log}");
    assert!(log_has(&log, "] @ bob: just for you"), "{log}");

    drop(bob_in);
    assert!(bob.wait().await.unwrap().success());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_told_in_words_and_the_terminal_comes_back() {
    let server = start_default().await;
    let tmux = Tmux::new();

    // Name taken: said on screen; on leaving, said again on the normal screen, exit code 4.
    let _carol = server.join("carol").await;
    let taken = tmux.chitty("taken", &server, &["-u", "carol"]).await;
    taken
        .wait_for("Disconnected: name taken: username carol is taken by another participant.")
        .await;
    assert!(
        taken
            .status(&server)
            .await
            .contains("| disconnected: name taken")
    );
    taken.press(&["Escape"]).await;
    assert_eq!(taken.exit_code().await, 4);
    taken
        .wait_for("chitty: name taken: username carol is taken by another participant")
        .await;

    // Kicked by an operator.
    let kicked = tmux.chitty("kicked", &server, &["-u", "dave"]).await;
    kicked.wait_for("| connected | dave #").await;
    assert!(
        server
            .hub
            .kick(chitty::hub::Target::Name("dave"), "spamming", None, "test")
            .is_some()
    );
    kicked
        .wait_for("Disconnected: removed by an operator: spamming.")
        .await;
    kicked.press(&["C-c"]).await;
    assert_eq!(kicked.exit_code().await, 4);

    // The server shutting down, for a client told not to reconnect.
    let last = tmux
        .chitty("last", &server, &["-u", "erin", "--no-reconnect"])
        .await;
    last.wait_for("| connected | erin #").await;
    server.shutdown().await;
    let screen = last
        .wait_for("Disconnected: the server ended the session.")
        .await;
    assert!(
        screen.contains("* Chitty-Chat server is shutting down"),
        "{screen}"
    );
    last.press(&["C-c"]).await;
    assert_eq!(last.exit_code().await, 0);
    assert!(log_has(
        &last.log(),
        "] @ SERVER: Chitty-Chat server is shutting down"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_keeps_line_mode_at_a_terminal() {
    let server = start_default().await;
    let tmux = Tmux::new();
    let pane = tmux
        .chitty("plain", &server, &["-u", "frank", "--plain"])
        .await;
    pane.wait_for("[L2] * Participant frank joined").await;
    assert_eq!(pane.format("#{alternate_on}").await, "0");
    pane.type_text("/quit").await;
    pane.press(&["Enter"]).await;
    assert_eq!(pane.exit_code().await, 0);
    server.shutdown().await;
}

/// chittyd in-process on `addr` itself rather than an ephemeral port, so that a restart comes
/// back where the client looks for it.
async fn start_at(addr: SocketAddr) -> TestServer {
    let server = Server::bind(ServerConfig {
        listen: addr,
        ..ServerConfig::default()
    })
    .await
    .expect("bind chittyd");
    let hub = std::sync::Arc::clone(server.hub());
    let edge = std::sync::Arc::clone(server.edge_stats());
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(server.run(stop.clone()));
    TestServer {
        addr,
        admin: None,
        metrics: None,
        hub,
        edge,
        stop,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_line_follows_a_reconnect_across_a_restart() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .expect("find a free port");
    let server = start_at(addr).await;
    let tmux = Tmux::new();
    let alice = tmux.chitty("alice", &server, &["-u", "alice"]).await;
    alice.wait_for("| connected | alice #").await;

    server.shutdown().await;
    alice
        .wait_for("connection lost: the server shut down; reconnecting in")
        .await;
    alice.wait_for("| reconnecting (attempt ").await;
    alice.type_text("typed while away").await;
    alice.press(&["Enter"]).await;
    alice.wait_for("Queued: sent once reconnected.").await;

    let server = start_at(addr).await;
    let screen = alice.wait_for("reconnected as alice (#").await;
    let back = screen
        .lines()
        .find(|l| l.contains("reconnected as alice (#"))
        .unwrap();
    alice.wait_for("] alice: typed while away").await;
    let status = alice.status(&server).await;
    assert!(status.contains(" | connected | alice #"), "{status}");
    assert!(
        back.contains(&format!("(#{})", id_of(&status, "alice"))),
        "{back} / {status}"
    );

    alice.press(&["Escape"]).await;
    assert_eq!(alice.exit_code().await, 0);
    assert!(log_has(&alice.log(), "] @ alice: typed while away"));
    server.shutdown().await;
}
