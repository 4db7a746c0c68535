//! The full-screen client as a person uses it: the real `chitty` binary in a real terminal (a
//! tmux pane), typed at with `send-keys` and read with `capture-pane`, against chittyd.
//!
//! Each pane runs a small shell script that records the terminal's settings (`stty -g`) before
//! and after chitty, and chitty's exit code, so the tests can check that the terminal comes back
//! exactly as it was. tmux keeps a dead pane on screen (`remain-on-exit`) so what chitty printed
//! on its way out can be read too.

mod tmux;

use chitty_testkit::process::{free_addr, wait_for_line};
use chitty_testkit::{TestServer, WsUser, config, start_at, start_default};
use tmux::Tmux;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

/// A line-mode `chitty` with pipes for standard input and output: line mode by itself.
fn line_mode(server: &TestServer, name: &str) -> (Child, Lines<BufReader<ChildStdout>>) {
    let addr = server.addr.to_string();
    let args = ["chat", "--no-log", "-u", name, "-H", &addr];
    let mut child = chitty_testkit::process::spawn(env!("CARGO_BIN_EXE_chitty"), &args);
    let out = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, out)
}

async fn read_until(lines: &mut Lines<BufReader<ChildStdout>>, needle: &str) -> String {
    wait_for_line(lines, needle).await
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

    // A narrower terminal wraps the messages again, between words.
    tmux.run(&["resize-window", "-t", "alice", "-x", "30", "-y", "20"])
        .await;
    alice
        .wait_until("the message wrapped at 30 columns", |screen| {
            screen.lines().any(|l| l.trim_end() == "héllo Wörld")
        })
        .await;
    assert!(alice.status(&server).await.contains(" | connected"));
    tmux.run(&["resize-window", "-t", "alice", "-x", "100", "-y", "30"])
        .await;
    alice.wait_for(" | connected | alice #").await;

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
        .wait_for("* 2 online: alice #1 (grpc), bob #2 (grpc)")
        .await;

    // An unknown command is refused in the pane and never sent: bob's next line from alice is
    // the one after it.
    alice.type_text("/nick carol").await;
    alice.press(&["Enter"]).await;
    alice
        .wait_for("\nunknown command /nick; /help lists the commands")
        .await;
    alice.type_text("after the typo").await;
    alice.press(&["Enter"]).await;
    let got = read_until(&mut bob_out, "] alice: ").await;
    assert!(got.ends_with("] alice: after the typo"), "{got}");

    // alice's own direct message is shown from the server's copy, at bob's time.
    alice.type_text("/msg 2 back at you").await;
    alice.press(&["Enter"]).await;
    let screen = alice.wait_for("[direct] you -> bob #2: back at you").await;
    let mine = screen.lines().find(|l| l.contains("back at you")).unwrap();
    let got = read_until(&mut bob_out, "back at you").await;
    assert!(got.ends_with("] alice #1 -> you: back at you"), "{got}");
    assert_eq!(
        mine.split(']').next(),
        got.split(']').next(),
        "{mine} / {got}"
    );

    // A WebSocket user without a name is its id.
    let mut anon = WsUser::connect(server.addr, "").await;
    anon.send(serde_json::json!({"recipient_id": id, "message": "from nowhere"}))
        .await;
    alice
        .wait_for(&format!("[direct] #{} -> you: from nowhere", anon.id))
        .await;

    // bob leaves; a direct message to him is refused in words.
    drop(bob_in);
    assert!(bob.wait().await.unwrap().success());
    alice.wait_for("Participant bob left").await;
    alice.type_text("/msg 2 still there?").await;
    alice.press(&["Enter"]).await;
    alice
        .wait_for("! not delivered: bob #2 has left (user 2 is not connected)")
        .await;

    // Esc leaves, and the terminal is as it was.
    alice.press(&["Escape"]).await;
    assert_eq!(alice.exit_code().await, 0);

    let log = alice.log();
    assert!(
        log_has(&log, "] @ alice: » hello bob, héllo Wörld"),
        "{log}"
    );
    assert!(log_has(&log, "] @ bob: hi alice"), "{log}");
    assert!(log_has(&log, "] @ bob: just for you"), "{log}");
    assert!(
        log_has(&log, &format!("] @ #{}: from nowhere", anon.id)),
        "{log}"
    );
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
            .await
            .expect("a single node decides at once")
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
    pane.wait_for("[L3] * Participant frank joined").await;
    assert_eq!(pane.format("#{alternate_on}").await, "0");
    pane.type_text("/quit").await;
    pane.press(&["Enter"]).await;
    assert_eq!(pane.exit_code().await, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_line_follows_a_reconnect_across_a_restart() {
    let addr = free_addr();
    let server = start_at(addr, config()).await;
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

    let server = start_at(addr, config()).await;
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
