//! A tmux server of the test's own and its panes: chitty in a real terminal, typed at with
//! `send-keys` and read with `capture-pane`.

use chitty_testkit::{PATIENCE, TestServer};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::process::Command;

/// How often a waiting test looks at the screen again.
const POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// A tmux server of the test's own, on a socket in a temporary folder.
pub struct Tmux {
    dir: tempfile::TempDir,
}

impl Tmux {
    pub fn new() -> Tmux {
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

    pub async fn run(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().await.expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Opens a 100×30 pane running `chitty chat ARGS` against `server`.
    pub async fn chitty(&self, name: &str, server: &TestServer, args: &[&str]) -> Pane<'_> {
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
pub struct Pane<'a> {
    tmux: &'a Tmux,
    target: String,
    dir: PathBuf,
}

impl Pane<'_> {
    /// Types text as it is.
    pub async fn type_text(&self, text: &str) {
        self.tmux
            .run(&["send-keys", "-t", &self.target, "-l", text])
            .await;
    }

    /// Pastes text the way a terminal does, bracketed when the program asked for it.
    pub async fn paste(&self, text: &str) {
        self.tmux.run(&["set-buffer", "--", text]).await;
        self.tmux
            .run(&["paste-buffer", "-p", "-d", "-t", &self.target])
            .await;
    }

    /// Presses keys by tmux's names for them (Enter, Left, Home, BSpace, DC, Escape, C-c…).
    pub async fn press(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.target];
        args.extend(keys);
        self.tmux.run(&args).await;
    }

    /// What the pane shows, with the normal screen's scrolled-off lines above it (tmux scrolls
    /// the screen by one line to say a pane is dead).
    pub async fn screen(&self) -> String {
        self.tmux
            .run(&["capture-pane", "-p", "-S", "-", "-t", &self.target])
            .await
    }

    pub async fn format(&self, what: &str) -> String {
        let out = self
            .tmux
            .run(&["display-message", "-p", "-t", &self.target, what])
            .await;
        out.trim().to_owned()
    }

    /// Waits until the screen shows `needle`; returns the screen.
    pub async fn wait_for(&self, needle: &str) -> String {
        self.wait_until(needle, |screen| screen.contains(needle))
            .await
    }

    /// Waits until the screen satisfies `ok`, which `what` describes; returns the screen.
    pub async fn wait_until(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
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
    pub async fn status(&self, server: &TestServer) -> String {
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
    pub async fn exit_code(&self) -> i32 {
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("chitty.log")).unwrap_or_default()
    }
}
