//! The full-screen client's state, driven by keys and messages as the event loop drives it.

use super::*;
use crossterm::event::{KeyEventState, KeyModifiers};

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ctrl(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
}

fn type_line(app: &mut App, text: &str) -> Outcome {
    for c in text.chars() {
        assert_eq!(app.on_key(key(KeyCode::Char(c))), Outcome::Nothing);
    }
    app.on_key(key(KeyCode::Enter))
}

fn msg(kind: Kind, time: u64, from: &str, text: &str) -> pb::ChatMessage {
    pb::ChatMessage {
        timestamp: time,
        username: from.into(),
        message: text.into(),
        kind: kind as i32,
        ..Default::default()
    }
}

fn join(time: u64, name: &str, id: u64, room: u32) -> pb::ChatMessage {
    pb::ChatMessage {
        sender_id: id,
        subject: name.into(),
        participants: room,
        ..msg(
            Kind::Join,
            time,
            "SERVER",
            &format!("Participant {name} joined Chitty-Chat at Lamport time {time}"),
        )
    }
}

fn connected() -> App {
    let mut app = App::new("127.0.0.1:8080", "alice");
    app.joined();
    app
}

fn last(app: &App) -> Entry {
    app.pane.entries().last().cloned().unwrap_or_default()
}

#[test]
fn enter_sends_what_was_typed_and_empties_the_line() {
    let mut app = connected();
    assert_eq!(
        type_line(&mut app, "héllo bob"),
        Outcome::Run(Command::Say("héllo bob".into()))
    );
    assert_eq!(app.input.text(), "");
    app.on_key(key(KeyCode::Up));
    assert_eq!(app.input.text(), "héllo bob", "Up recalls it");
}

#[test]
fn editing_keys_reach_the_input() {
    let mut app = connected();
    for c in "wörld".chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
    app.on_key(key(KeyCode::Home));
    app.on_key(key(KeyCode::Delete));
    app.on_key(key(KeyCode::Char('W')));
    app.on_key(key(KeyCode::End));
    app.on_key(key(KeyCode::Left));
    app.on_key(key(KeyCode::Backspace));
    assert_eq!(app.input.text(), "Wörd");
    app.on_key(ctrl('a'));
    app.on_key(ctrl('k'));
    assert_eq!(app.input.text(), "");
}

#[test]
fn key_releases_are_ignored() {
    let mut app = connected();
    let mut release = key(KeyCode::Char('x'));
    release.kind = KeyEventKind::Release;
    release.state = KeyEventState::NONE;
    app.on_key(release);
    assert_eq!(app.input.text(), "");
}

#[test]
fn the_ways_to_leave() {
    let mut app = connected();
    assert_eq!(app.on_key(key(KeyCode::Esc)), Outcome::Quit);
    assert_eq!(app.on_key(ctrl('c')), Outcome::Quit);
    assert_eq!(
        app.on_key(ctrl('d')),
        Outcome::Quit,
        "Ctrl-D on an empty line"
    );
    assert_eq!(type_line(&mut app, "/quit"), Outcome::Quit);
    app.on_key(key(KeyCode::Char('x')));
    assert_eq!(
        app.on_key(ctrl('d')),
        Outcome::Nothing,
        "Ctrl-D deletes otherwise"
    );
}

#[test]
fn commands_that_need_the_server_go_to_the_loop() {
    let mut app = connected();
    assert_eq!(
        type_line(&mut app, "/msg 2 psst"),
        Outcome::Run(Command::Direct {
            to: 2,
            text: "psst".into()
        })
    );
}

#[test]
fn help_and_mistakes_are_answered_in_the_pane() {
    let mut app = connected();
    assert_eq!(type_line(&mut app, "/help"), Outcome::Nothing);
    let text: Vec<String> = app.pane.entries().map(Entry::text).collect();
    assert!(
        text.iter().any(|t| t.starts_with("/msg ID text")),
        "{text:?}"
    );
    assert_eq!(type_line(&mut app, "/msg bob hi"), Outcome::Nothing);
    assert!(last(&app).text().starts_with("usage: /msg ID text"));
    assert_eq!(last(&app).pieces[0].tone, Tone::Error);
    assert_eq!(type_line(&mut app, "/frobnicate"), Outcome::Nothing);
    assert!(last(&app).text().contains("unknown command /frobnicate"));
}

#[test]
fn nothing_is_sent_unless_connected() {
    let mut app = App::new("h:1", "alice");
    assert_eq!(type_line(&mut app, "too early"), Outcome::Nothing);
    assert!(last(&app).text().contains("not connected"));
    app.joined();
    app.ended(None);
    assert_eq!(type_line(&mut app, "too late"), Outcome::Nothing);
    app.on_key(key(KeyCode::Up));
    assert_eq!(app.input.text(), "too late");
}

#[test]
fn the_own_join_notice_gives_the_id_and_notices_give_the_room_size() {
    let mut app = connected();
    app.on_message(&join(2, "bob", 1, 1));
    assert_eq!(app.id(), None);
    app.on_message(&join(4, "alice", 2, 2));
    assert_eq!(app.id(), Some(2));
    app.set_lamport(5);
    let (left, right) = app.status();
    assert_eq!(
        left,
        " 127.0.0.1:8080 | connected | alice #2 | L5 | 2 online"
    );
    assert_eq!(right, "/help | Esc quits ");
    let mut leave = msg(Kind::Leave, 9, "SERVER", "Participant bob left");
    leave.sender_id = 1;
    leave.participants = 1;
    app.on_message(&leave);
    assert!(app.status().0.ends_with("| 1 online"));
}

#[test]
fn lines_show_time_sender_and_text_and_tell_kinds_apart() {
    let mut app = connected();
    app.on_message(&join(4, "alice", 2, 2));
    let joined = last(&app);
    assert_eq!(
        joined.text(),
        "[L4] * Participant alice joined Chitty-Chat at Lamport time 4 (#2)"
    );
    assert_eq!(joined.pieces[1].tone, Tone::Server);

    app.on_message(&msg(Kind::Message, 6, "bob", "hi"));
    let said = last(&app);
    assert_eq!(said.text(), "[L6] bob: hi");
    assert_eq!(said.pieces[0].tone, Tone::Time);
    assert_eq!(said.pieces[1].tone, Tone::Name);

    app.on_message(&msg(Kind::Message, 7, "alice", "me"));
    assert_eq!(last(&app).pieces[1].tone, Tone::Own);

    let mut direct = msg(Kind::Direct, 8, "bob", "psst");
    direct.sender_id = 1;
    direct.recipient_id = 2;
    app.on_message(&direct);
    assert_eq!(last(&app).text(), "[L8] [direct] bob #1 -> you: psst");
    assert_eq!(last(&app).pieces[1].tone, Tone::Direct);

    app.on_message(&msg(Kind::Error, 9, "SERVER", "message is too long"));
    assert_eq!(last(&app).text(), "[L9] ! message is too long");
    assert_eq!(last(&app).pieces[1].tone, Tone::Error);

    app.on_message(&msg(Kind::Notice, 10, "SERVER", "shutting down"));
    assert_eq!(last(&app).text(), "[L10] * shutting down");
}

#[test]
fn control_characters_from_the_network_never_reach_the_pane() {
    let mut app = connected();
    let mut evil = msg(
        Kind::Direct,
        3,
        "m\u{1b}]0;owned\u{7}allory",
        "\u{1b}[2J\u{1b}[31mgotcha\r\n\u{9b}1m\u{0}",
    );
    evil.sender_id = 9;
    app.on_message(&evil);
    app.on_message(&join(4, "x\u{1b}[5m", 9, 2));
    app.users();
    app.sent_direct(9, "ok", 5);
    for entry in app.pane.entries() {
        let text = entry.text();
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }
    assert!(app.pane.entries().any(|e| e.text().contains("gotcha")));
}

#[test]
fn sent_direct_messages_are_shown_with_the_recipient() {
    let mut app = connected();
    app.on_message(&join(3, "bob", 1, 2));
    app.sent_direct(1, "psst", 5);
    assert_eq!(last(&app).text(), "[L5] [direct] you -> bob #1: psst");
    app.sent_direct(7, "anyone?", 6);
    assert_eq!(last(&app).text(), "[L6] [direct] you -> #7: anyone?");
}

#[test]
fn users_lists_who_was_seen_without_asking_the_server() {
    let mut app = connected();
    assert_eq!(type_line(&mut app, "/users"), Outcome::Nothing);
    assert_eq!(last(&app).text(), "Seen since you joined: nobody.");
    app.on_message(&join(2, "bob", 1, 1));
    app.on_message(&join(4, "alice", 2, 2));
    assert_eq!(type_line(&mut app, "/users"), Outcome::Nothing);
    assert_eq!(
        last(&app).text(),
        "Seen since you joined: bob #1, alice #2 (2 online in all)."
    );
}

#[test]
fn a_leave_forgets_the_name() {
    let mut app = connected();
    app.on_message(&join(2, "bob", 1, 2));
    let mut leave = msg(Kind::Leave, 3, "SERVER", "Participant bob left");
    leave.sender_id = 1;
    leave.participants = 1;
    app.on_message(&leave);
    app.sent_direct(1, "gone?", 4);
    assert_eq!(last(&app).text(), "[L4] [direct] you -> #1: gone?");
}

#[test]
fn server_errors_read_as_words_in_the_pane_and_the_status() {
    let mut app = connected();
    let kicked = ClientError::Server(tonic::Status::aborted("removed by an operator: spam"));
    app.ended(Some(&kicked));
    assert_eq!(
        last(&app).text(),
        "Disconnected: removed by an operator: spam. Esc leaves."
    );
    assert!(
        app.status()
            .0
            .contains("| disconnected: removed by an operator: spam |")
    );
    let taken = ClientError::Server(tonic::Status::already_exists(
        "username alice is taken by another participant",
    ));
    app.ended(Some(&taken));
    assert!(
        last(&app)
            .text()
            .contains("name taken: username alice is taken")
    );
    app.ended(None);
    assert!(
        app.status()
            .0
            .contains("disconnected: the server ended the session")
    );
    let unreachable = ClientError::Address("x y".into(), "is it there?".into());
    app.ended(Some(&unreachable));
    assert!(
        last(&app).text().ends_with("is it there? Esc leaves."),
        "no doubled stop"
    );
}

#[test]
fn paging_keys_scroll_and_the_status_says_so() {
    let mut app = connected();
    app.pane.resize(40, 3);
    for i in 0..10 {
        app.on_message(&msg(Kind::Message, i, "bob", &format!("m{i}")));
    }
    app.on_key(key(KeyCode::PageUp));
    assert!(app.pane.scroll() > 0);
    assert_eq!(app.status().1, "scrolled back: PgDn for newer ");
    app.on_key(key(KeyCode::PageDown));
    app.on_key(key(KeyCode::PageDown));
    assert_eq!(app.pane.scroll(), 0);
    app.on_key(key(KeyCode::PageUp));
    type_line(&mut app, "back to the bottom");
    assert_eq!(app.pane.scroll(), 0, "sending jumps to the newest");
}

#[test]
fn a_lost_connection_shows_in_the_status_and_queues_what_is_typed() {
    let mut app = connected();
    app.on_message(&join(2, "alice", 3, 1));
    let retry = Retry {
        attempt: 2,
        delay: std::time::Duration::from_millis(1200),
        why: "the server shut down".into(),
    };
    app.reconnecting(&retry);
    assert_eq!(
        last(&app).text(),
        "connection lost: the server shut down; reconnecting in 1.2 s (attempt 2)"
    );
    let (status, _) = app.status();
    assert!(
        status.contains(" | reconnecting (attempt 2) | alice | "),
        "{status}"
    );
    assert_eq!(app.id(), None, "a restarted server gives a new id");

    assert_eq!(type_line(&mut app, "hello again"), Outcome::Nothing);
    assert_eq!(last(&app).text(), "Queued: sent once reconnected.");
    // The list is what this client has seen, so it answers while disconnected too.
    assert_eq!(type_line(&mut app, "/users"), Outcome::Nothing);
    assert!(last(&app).text().starts_with("Seen since you joined:"));

    // The stream is open again, but nothing goes before we are back in the room, and nothing
    // typed now overtakes what waits.
    app.joined();
    assert_eq!(type_line(&mut app, "and more"), Outcome::Nothing);
    assert!(app.take_queued().is_empty());
    app.on_message(&join(40, "alice", 9, 2));
    app.back("reconnected as alice (#9)".into());
    assert_eq!(last(&app).text(), "Sending 2 queued messages.");
    assert_eq!(
        app.take_queued(),
        [
            Command::Say("hello again".into()),
            Command::Say("and more".into())
        ]
    );
    assert!(app.take_queued().is_empty());
    assert!(app.status().0.contains(" | connected | alice #9 | "));
    assert!(matches!(type_line(&mut app, "now"), Outcome::Run(_)));
}

#[test]
fn the_queue_refuses_beyond_its_bound() {
    let mut app = connected();
    app.reconnecting(&Retry {
        attempt: 1,
        delay: std::time::Duration::ZERO,
        why: "x".into(),
    });
    for n in 0..crate::client::reconnect::QUEUE_LIMIT {
        type_line(&mut app, &format!("m{n}"));
    }
    type_line(&mut app, "one too many");
    assert!(
        last(&app)
            .text()
            .starts_with("Not sent: disconnected, and 100 messages already wait"),
        "{}",
        last(&app).text()
    );
}
