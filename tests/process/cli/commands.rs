//! What line mode understands and shows, against chittyd: ids in join notices, unknown commands
//! refused locally, `/users` from the server's roster, direct messages shown from the server's
//! copy, a recipient who has gone, a WebSocket user without a name, and the private log file.

use super::{chitty, joined_id, next_line, shown_time, stderr_lines, stdout_lines};
use crate::chittyd;
use chitty_testkit::PATIENCE;
use chitty_testkit::WsUser;
use chitty_testkit::process::wait_for_line as wait_for;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tokio::io::AsyncWriteExt;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn line_mode_commands_ids_the_roster_and_direct_messages() {
    let daemon = chittyd().start().await;
    let dir = tempfile::tempdir().unwrap();
    // chitty creates the log's folder: private, like the log.
    let alice_log = dir.path().join("private/alice.log");
    let mut alice = chitty(&daemon.addr, "alice", &alice_log);
    let mut alice_out = stdout_lines(&mut alice);
    let mut alice_err = stderr_lines(&mut alice);
    let mut alice_in = alice.stdin.take().unwrap();
    let alice_id = joined_id(&wait_for(&mut alice_out, "Participant alice joined").await);
    assert_eq!(mode(&alice_log), 0o600);
    assert_eq!(mode(&dir.path().join("private")), 0o700);

    let mut bob = chitty(&daemon.addr, "bob", &dir.path().join("bob.log"));
    let mut bob_out = stdout_lines(&mut bob);
    let bob_in = bob.stdin.take().unwrap();
    wait_for(&mut bob_out, "Participant bob joined").await;
    // Join notices carry the id, so /msg can be used.
    let bob_id = joined_id(&wait_for(&mut alice_out, "Participant bob joined").await);
    assert_ne!(bob_id, alice_id);

    // A WebSocket user without a name (direct messages only) is shown by its id.
    let mut anon = WsUser::connect(&daemon.addr, "").await;
    anon.send(serde_json::json!({"recipient_id": alice_id, "message": "from nowhere"}))
        .await;
    let line = wait_for(&mut alice_out, "from nowhere").await;
    assert!(
        line.starts_with("[L") && line.ends_with(&format!("] #{} -> you: from nowhere", anon.id)),
        "{line}"
    );

    // An unknown command is refused here and never sent; // sends a literal slash line.
    alice_in
        .write_all(b"/nick carol\n//nick is literal\n/users\n")
        .await
        .unwrap();
    assert_eq!(
        next_line(&mut alice_err).await,
        "chitty: unknown command /nick; /help lists the commands (start with // to send a line \
         that begins with /)"
    );
    let first = wait_for(&mut bob_out, "] alice: ").await;
    assert!(first.ends_with("] alice: /nick is literal"), "{first}");
    let users = wait_for(&mut alice_out, " online: ").await;
    assert!(
        users.ends_with(&format!(
            "* 3 online: alice #{alice_id} (grpc), bob #{bob_id} (grpc), #{} (websocket)",
            anon.id
        )),
        "{users}"
    );

    // A direct message: the sender's line is the server's copy, at the recipient's time.
    alice_in
        .write_all(format!("/msg {bob_id} just for you\n").as_bytes())
        .await
        .unwrap();
    let sent = wait_for(&mut alice_out, "just for you").await;
    assert!(
        sent.ends_with(&format!("] -> bob #{bob_id}: just for you")),
        "{sent}"
    );
    let got = wait_for(&mut bob_out, "just for you").await;
    assert!(
        got.ends_with(&format!("] alice #{alice_id} -> you: just for you")),
        "{got}"
    );
    assert_eq!(shown_time(&sent), shown_time(&got));

    // bob leaves; a direct message to him is refused, in words, and counted.
    drop(bob_in);
    wait_for(&mut alice_out, "Participant bob left").await;
    assert!(bob.wait().await.unwrap().success());
    alice_in
        .write_all(format!("/msg {bob_id} still there?\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        next_line(&mut alice_err).await,
        format!("chitty: not delivered: bob #{bob_id} has left (user {bob_id} is not connected)")
    );

    drop(alice_in);
    let status = tokio::time::timeout(PATIENCE, alice.wait())
        .await
        .expect("alice left")
        .unwrap();
    assert_eq!(status.code(), Some(5), "a refused message is exit status 5");
    assert_eq!(
        next_line(&mut alice_err).await,
        "chitty: not everything was delivered: the server refused 1 of the messages sent (see \
         above)"
    );

    // The log names the anonymous sender by id too, never by an empty name.
    let log = std::fs::read_to_string(&alice_log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.starts_with("L[") && l.ends_with(&format!("] @ #{}: from nowhere", anon.id))),
        "{log}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_log_open_to_others_is_made_private_and_said_so() {
    let daemon = chittyd().start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("shared.log");
    std::fs::write(&log, "L[1] @ bob: an old line\n").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).unwrap();

    let mut alice = chitty(&daemon.addr, "alice", &log);
    let mut err = stderr_lines(&mut alice);
    assert_eq!(
        next_line(&mut err).await,
        format!(
            "chitty: the client log {} was open to others (mode 0644); it is now private (0600)",
            log.display()
        )
    );
    let mut out = stdout_lines(&mut alice);
    wait_for(&mut out, "Participant alice joined").await;
    drop(alice.stdin.take());
    assert!(alice.wait().await.unwrap().success());
    assert_eq!(mode(&log), 0o600);
    let kept = std::fs::read_to_string(&log).unwrap();
    assert!(kept.starts_with("L[1] @ bob: an old line\n"), "{kept}");
    daemon.stop().await;
}
