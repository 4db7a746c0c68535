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

/// What chittyd's welcome offers (no rate limit: pacing is the event loop's).
fn chittyd() -> Offers {
    Offers {
        welcomed: true,
        direct: true,
        roster: true,
        rate: None,
    }
}

fn connected() -> App {
    let mut app = App::new("127.0.0.1:8080", "alice");
    app.joined();
    app.ready(chittyd());
    app
}

/// What the event loop would send now.
fn sent(app: &mut App) -> Vec<Command> {
    std::iter::from_fn(|| app.next_to_send()).collect()
}

fn last(app: &App) -> Entry {
    app.pane.entries().last().cloned().unwrap_or_default()
}

#[test]
fn enter_sends_what_was_typed_and_empties_the_line() {
    let mut app = connected();
    assert_eq!(type_line(&mut app, "héllo bob"), Outcome::Nothing);
    assert_eq!(sent(&mut app), [Command::Say("héllo bob".into())]);
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
    type_line(&mut app, "/msg 2 psst");
    type_line(&mut app, "/users");
    assert!(
        app.status().0.ends_with(" | 2 waiting"),
        "{:?}",
        app.status()
    );
    assert_eq!(
        sent(&mut app),
        [
            Command::Direct {
                to: 2,
                text: "psst".into()
            },
            Command::Users
        ]
    );
    assert!(!app.status().0.contains("waiting"));
}

#[test]
fn nothing_goes_before_the_server_has_said_what_it_offers() {
    let mut app = App::new("h:1", "alice");
    app.joined();
    type_line(&mut app, "early");
    assert!(!app.sendable());
    assert!(sent(&mut app).is_empty());
    app.ready(chittyd());
    assert_eq!(sent(&mut app), [Command::Say("early".into())]);
}

#[test]
fn msg_is_refused_by_a_server_without_direct_messages() {
    let mut app = App::new("h:1", "alice");
    app.joined();
    // Typed before the server said: checked when it goes, and refused then.
    type_line(&mut app, "/msg 2 queued secret");
    type_line(&mut app, "after");
    app.ready(Offers::default());
    assert_eq!(sent(&mut app), [Command::Say("after".into())]);
    let refusal = app
        .pane
        .entries()
        .map(Entry::text)
        .find(|t| t.starts_with("/msg refused"))
        .unwrap();
    assert!(refusal.contains("it sent no welcome"), "{refusal}");
    // Typed once it is known: refused at once, in the pane.
    type_line(&mut app, "/msg 2 secret");
    assert!(sent(&mut app).is_empty());
    assert!(
        last(&app)
            .text()
            .starts_with("/msg refused: this server does not offer direct messages")
    );
    assert_eq!(last(&app).pieces[0].tone, Tone::Error);
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

    let mut anonymous = msg(Kind::Direct, 11, "", "from nowhere");
    anonymous.sender_id = 5;
    anonymous.recipient_id = 2;
    app.on_message(&anonymous);
    assert_eq!(last(&app).text(), "[L11] [direct] #5 -> you: from nowhere");

    let mut roster = msg(Kind::Roster, 12, "SERVER", "3 online");
    roster.roster = [
        (1, "bob", "grpc"),
        (2, "alice", "grpc"),
        (5, "", "websocket"),
    ]
    .into_iter()
    .map(|(id, name, transport)| pb::Participant {
        id,
        username: name.into(),
        transport: transport.into(),
    })
    .collect();
    app.on_message(&roster);
    assert_eq!(
        last(&app).text(),
        "[L12] * 3 online: bob #1 (grpc), alice #2 (grpc), #5 (websocket)"
    );
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
    app.on_message(&join(5, "alice", 1, 3));
    let mut echo = msg(Kind::Direct, 6, "alice", "ok");
    echo.sender_id = 1;
    echo.recipient_id = 9;
    app.on_message(&echo);
    let mut failed = msg(Kind::Error, 7, "SERVER", "no\u{7}");
    failed.recipient_id = 9;
    app.on_message(&failed);
    let mut without = App::new("h:1", "alice");
    without.joined();
    without.ready(Offers::default());
    without.on_message(&join(4, "x\u{1b}[5m", 9, 2));
    type_line(&mut without, "/users");
    assert!(last(&without).text().contains("x\u{fffd}[5m #9"));
    for entry in app.pane.entries() {
        let text = entry.text();
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }
    assert!(app.pane.entries().any(|e| e.text().contains("gotcha")));
}

#[test]
fn the_servers_copy_of_a_sent_direct_message_names_the_recipient() {
    let mut app = connected();
    app.on_message(&join(2, "alice", 2, 1));
    app.on_message(&join(3, "bob", 1, 2));
    let mut echo = msg(Kind::Direct, 5, "alice", "psst");
    echo.sender_id = 2;
    echo.recipient_id = 1;
    app.on_message(&echo);
    assert_eq!(last(&app).text(), "[L5] [direct] you -> bob #1: psst");
    assert_eq!(last(&app).pieces[1].tone, Tone::Direct);
    echo.recipient_id = 7;
    echo.timestamp = 6;
    app.on_message(&echo);
    assert_eq!(last(&app).text(), "[L6] [direct] you -> #7: psst");
}

#[test]
fn users_asks_the_server_that_lists_who_is_online_and_else_answers_here() {
    // Before the server said what it offers (and while reconnecting): what was seen.
    let mut app = App::new("h:1", "alice");
    app.joined();
    assert_eq!(type_line(&mut app, "/users"), Outcome::Nothing);
    assert_eq!(last(&app).text(), "Seen since you joined: nobody.");
    app.on_message(&join(2, "bob", 1, 1));
    app.on_message(&join(4, "alice", 2, 2));
    type_line(&mut app, "/users");
    assert_eq!(
        last(&app).text(),
        "Seen since you joined: bob #1, alice #2 (2 online in all)."
    );
    assert!(sent(&mut app).is_empty());

    // chittyd lists them: the roster is asked for.
    app.ready(chittyd());
    type_line(&mut app, "/users");
    assert_eq!(sent(&mut app), [Command::Users]);

    // A server without the roster: said so, and what was seen.
    let mut original = App::new("h:1", "alice");
    original.joined();
    original.ready(Offers::default());
    type_line(&mut original, "/users");
    assert_eq!(
        last(&original).text(),
        "This server does not list who is online (no \"roster\" in its welcome). \
         Seen since you joined: nobody."
    );
    assert!(sent(&mut original).is_empty());
}

#[test]
fn a_direct_message_to_someone_who_left_says_they_have_gone() {
    let mut app = connected();
    app.on_message(&join(2, "bob", 1, 2));
    let mut leave = msg(Kind::Leave, 3, "SERVER", "Participant bob left");
    leave.sender_id = 1;
    leave.participants = 1;
    app.on_message(&leave);
    let mut gone = msg(Kind::Error, 4, "SERVER", "user 1 is not connected");
    gone.recipient_id = 1;
    app.on_message(&gone);
    assert_eq!(
        last(&app).text(),
        "[L4] ! not delivered: bob #1 has left (user 1 is not connected)"
    );
    assert_eq!(last(&app).pieces[1].tone, Tone::Error);
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
        repeated: false,
    };
    app.reconnecting(&retry);
    assert_eq!(
        last(&app).text(),
        "attempt 1 failed: the server shut down; reconnecting in 1.2 s (attempt 2)"
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

    // The stream is open again, but nothing goes before the server has said what it offers,
    // and nothing typed now overtakes what waits.
    app.joined();
    assert_eq!(type_line(&mut app, "and more"), Outcome::Nothing);
    assert!(sent(&mut app).is_empty());
    app.on_message(&join(40, "alice", 9, 2));
    app.back("reconnected as alice (#9)".into());
    assert_eq!(last(&app).text(), "Sending 2 queued messages.");
    app.ready(chittyd());
    assert_eq!(
        sent(&mut app),
        [
            Command::Say("hello again".into()),
            Command::Say("and more".into())
        ]
    );
    assert!(sent(&mut app).is_empty());
    assert!(app.status().0.contains(" | connected | alice #9 | "));
    type_line(&mut app, "now");
    assert_eq!(sent(&mut app), [Command::Say("now".into())]);
}

#[test]
fn the_queue_refuses_beyond_its_bound() {
    let mut app = connected();
    app.reconnecting(&Retry {
        attempt: 1,
        delay: std::time::Duration::ZERO,
        why: "x".into(),
        repeated: false,
    });
    for n in 0..crate::client::reconnect::QUEUE_LIMIT {
        type_line(&mut app, &format!("m{n}"));
    }
    type_line(&mut app, "one too many");
    assert!(
        last(&app)
            .text()
            .starts_with("Not sent: 100 messages already wait to be sent"),
        "{}",
        last(&app).text()
    );
}
