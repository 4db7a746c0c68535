//! Event validation: the username and text rules on arbitrary Unicode, and a gRPC participant's
//! event stream (length-delimited `ChatEvent` protobufs, as a client sends them) checked event
//! by event against a model of the session rules in the README's "Rules and errors" table.
//!
//! The first byte of the input picks the mode; the rest is the name, the text or the stream.
//! The rules are checked as properties (an accepted name really is 1 to 16 characters with no
//! whitespace or control character and not `SERVER`; every error reports what it claims), not by
//! repeating their code. The stream is checked exactly: for each event, what the participant,
//! an observer in the room and a direct-only user receive (kind, text, ids, Lamport time), and
//! whether and how the session ends, including the leave announced for a joined participant.

use crate::frame::Frame;
use crate::peer::Peer;
use chitty::clock::MAX_PEER_TIMESTAMP;
use chitty::hub::outbox::Ending;
use chitty::hub::rules::{
    MAX_MESSAGE_CHARS, MAX_USERNAME_CHARS, NameError, SERVER_NAME, TextError, check_text,
    check_username, is_bidi_control, is_format,
};
use chitty::hub::{Flow, SessionError, Transport};
use chitty::pb::{self, chat_event, chat_message::Kind};
use chitty::server::chat::event_of;
use prost::Message;

/// Runs one input; panics if an invariant breaks.
pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => username(&String::from_utf8_lossy(rest)),
        1 => text(&String::from_utf8_lossy(rest)),
        _ => grpc_stream(rest),
    }
}

fn username(name: &str) {
    let chars = name.chars().count();
    let bad = |c: char| c.is_whitespace() || c.is_control() || is_format(c);
    match check_username(name) {
        Ok(()) => {
            assert!((1..=MAX_USERNAME_CHARS).contains(&chars), "{name:?}");
            assert!(!name.chars().any(bad), "{name:?}");
            assert!(!name.eq_ignore_ascii_case(SERVER_NAME), "{name:?}");
        }
        Err(e) => {
            match e {
                NameError::Empty => assert_eq!(chars, 0),
                NameError::TooLong(n) => {
                    assert_eq!(n, chars);
                    assert!(n > MAX_USERNAME_CHARS);
                }
                NameError::BadCharacter => {
                    assert!(chars <= MAX_USERNAME_CHARS);
                    assert!(name.chars().any(bad), "{name:?}");
                }
                NameError::Reserved => assert!(name.eq_ignore_ascii_case(SERVER_NAME)),
            }
            // The message goes back to the client: it must not echo the (possibly huge) name.
            assert!(e.to_string().len() < 100, "{e}");
        }
    }
}

/// What the text rule refuses: control characters and bidirectional controls.
fn text_bad(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

fn text(text: &str) {
    let chars = text.chars().count();
    match check_text(text) {
        Ok(()) => {
            assert!((1..=MAX_MESSAGE_CHARS).contains(&chars), "{text:?}");
            assert!(!text.chars().any(text_bad), "{text:?}");
        }
        Err(e) => {
            match e {
                TextError::Empty => assert_eq!(chars, 0),
                TextError::TooLong(n) => {
                    assert_eq!(n, chars);
                    assert!(n > MAX_MESSAGE_CHARS);
                    assert!(!text.chars().any(text_bad));
                }
                TextError::ControlCharacter(c) => {
                    let first = text.chars().find(|&c| text_bad(c));
                    assert_eq!(first.map(u32::from), Some(c), "{text:?}");
                }
            }
            assert!(e.to_string().len() < 100, "{e}");
        }
    }
}

const BOB: usize = 0;
const DM: usize = 1;
const SUBJECT: usize = 2;
/// The id the subject gets if it joins: bob is 1 and the direct-only user 2.
const SUBJECT_ID: u64 = 3;

/// Where the subject session stands, in the model.
enum State {
    New,
    Joined(String),
    Ended,
}

/// What one step is expected to do.
struct Expected {
    frames: [Vec<Frame>; 3],
    /// How the subject's session ends in this step, if it does.
    ending: Option<Ending>,
}

fn grpc_stream(mut input: &[u8]) {
    let hub = crate::hub(64, 16);
    let mut peers = [
        crate::joined(&hub, Transport::Grpc, "bob"),
        crate::direct_only(&hub, Transport::WebSocket),
        Peer::new(&hub, Transport::Grpc),
    ];
    peers[BOB].drain();
    let mut state = State::New;
    // Each decoded event is one step; the stream ends (a disconnect to the session) when the
    // input runs out or stops being protobuf, as the gRPC transport does.
    while !input.is_empty() {
        let Ok(ev) = pb::ChatEvent::decode_length_delimited(&mut input) else {
            break;
        };
        let before = hub.clock().now();
        let want = expect_event(&state, &ev, before);
        let flow = peers[SUBJECT].handle().handle(ev.timestamp, event_of(&ev));
        let ended = want.ending.is_some() || matches!(state, State::Ended);
        assert_eq!(flow == Flow::Ended, ended, "{ev:?}");
        state = settle(&mut peers, state, want, &format!("{ev:?}"));
        let in_room = 1 + u32::from(matches!(state, State::Joined(_)));
        assert_eq!(hub.participants(), in_room);
    }
    let before = hub.clock().now();
    let mut want = Expected {
        frames: Default::default(),
        ending: None,
    };
    match &state {
        State::New => want.ending = Some(Ending::Clean),
        State::Joined(name) => {
            want.ending = Some(Ending::Clean);
            want.frames[BOB].push(Frame::leave(before + 1, name, SUBJECT_ID, 1));
        }
        State::Ended => {}
    }
    peers[SUBJECT].handle().disconnect();
    settle(&mut peers, state, want, "the end of the stream");
    assert_eq!(hub.participants(), 1);
}

/// Compares what every peer received and how the subject ended with `want`; returns the new state.
fn settle(peers: &mut [Peer; 3], state: State, want: Expected, what: &str) -> State {
    for (i, p) in peers.iter_mut().enumerate() {
        assert_eq!(p.drain(), want.frames[i], "peer {i} after {what}");
    }
    let subject = &mut peers[SUBJECT];
    if let Some(ending) = want.ending {
        assert_eq!(subject.ending.as_ref(), Some(&ending), "after {what}");
        assert!(subject.handle().is_ended());
        return State::Ended;
    }
    if matches!(state, State::Ended) {
        return state;
    }
    assert_eq!(subject.ending, None, "after {what}");
    if matches!(state, State::New) {
        subject.note_id();
        if let Some(id) = subject.id {
            assert_eq!(id, SUBJECT_ID);
            let join = subject.frames.iter().find(|f| f.kind == Kind::Join);
            let name = join.map(|f| f.subject.clone()).unwrap_or_default();
            return State::Joined(name);
        }
    }
    state
}

/// The rules table, for one event from the subject when the hub clock reads `before`.
fn expect_event(state: &State, ev: &pb::ChatEvent, before: u64) -> Expected {
    let mut out = Expected {
        frames: Default::default(),
        ending: None,
    };
    let own = match state {
        State::Ended => return out,
        State::New => None,
        State::Joined(name) => Some(name.as_str()),
    };
    let fail = |out: &mut Expected, e: SessionError| {
        out.ending = Some(Ending::Error(e));
        if let Some(name) = own {
            // Violations leave at the server's own next time.
            out.frames[BOB].push(Frame::leave(before + 1, name, SUBJECT_ID, 1));
        }
    };
    if ev.timestamp > MAX_PEER_TIMESTAMP {
        fail(&mut out, SessionError::TimestampOutOfRange(ev.timestamp));
        return out;
    }
    let t = before.max(ev.timestamp) + 1;
    let claimed = match (&ev.event, own) {
        (None, _) => {
            fail(&mut out, SessionError::EmptyEvent);
            return out;
        }
        (Some(chat_event::Event::Join(j)), None) => {
            match check_username(&j.username) {
                Err(e) => fail(&mut out, SessionError::InvalidName(e)),
                Ok(()) if j.username == "bob" => {
                    fail(&mut out, SessionError::NameTaken("bob".into()))
                }
                Ok(()) => {
                    // Its welcome takes the time, its join the next.
                    let f = Frame::join(t + 1, &j.username, SUBJECT_ID, 2);
                    out.frames[BOB].push(f.clone());
                    out.frames[SUBJECT].push(Frame::welcome(t, SUBJECT_ID));
                    out.frames[SUBJECT].push(f);
                }
            }
            return out;
        }
        (Some(chat_event::Event::Join(_)), Some(own)) => {
            fail(&mut out, SessionError::AlreadyJoined(own.to_owned()));
            return out;
        }
        (Some(chat_event::Event::Message(_)), None) => {
            fail(&mut out, SessionError::NotJoined("message"));
            return out;
        }
        (Some(chat_event::Event::Leave(_)), None) => {
            fail(&mut out, SessionError::NotJoined("leave"));
            return out;
        }
        (Some(chat_event::Event::Roster(_)), None) => {
            fail(&mut out, SessionError::NotJoined("roster request"));
            return out;
        }
        (Some(chat_event::Event::Roster(_)), Some(own)) => {
            // Every session, in id order: bob, the direct-only user, the subject.
            let listed = [
                (1, "bob", Transport::Grpc),
                (2, "", Transport::WebSocket),
                (SUBJECT_ID, own, Transport::Grpc),
            ];
            out.frames[SUBJECT].push(Frame::roster(t, &listed));
            return out;
        }
        (Some(chat_event::Event::Message(m)), Some(_)) => &m.username,
        (Some(chat_event::Event::Leave(l)), Some(_)) => &l.username,
    };
    let own = own.unwrap_or_default();
    if !claimed.is_empty() && claimed != own {
        fail(
            &mut out,
            SessionError::Impersonation {
                own: own.to_owned(),
                claimed: claimed.chars().take(64).collect(),
            },
        );
        return out;
    }
    let Some(chat_event::Event::Message(m)) = &ev.event else {
        out.ending = Some(Ending::Clean);
        out.frames[BOB].push(Frame::leave(t, own, SUBJECT_ID, 1));
        return out;
    };
    let r = m.recipient_id;
    if let Err(e) = check_text(&m.message) {
        out.frames[SUBJECT].push(Frame::error(t, r, &e.to_string()));
        return out;
    }
    let to = match r {
        0 => {
            let f = Frame::message(t, own, SUBJECT_ID, &m.message);
            out.frames[BOB].push(f.clone());
            out.frames[SUBJECT].push(f);
            return out;
        }
        1 => BOB,
        2 => DM,
        SUBJECT_ID => SUBJECT,
        _ => {
            let why = format!("user {r} is not connected");
            out.frames[SUBJECT].push(Frame::error(t, r, &why));
            return out;
        }
    };
    let f = Frame::direct(t, own, SUBJECT_ID, r, &m.message);
    // The sender gets its copy, with the same time, unless it wrote to itself.
    if to != SUBJECT {
        out.frames[SUBJECT].push(f.clone());
    }
    out.frames[to].push(f);
    out
}
