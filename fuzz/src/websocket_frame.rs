//! One WebSocket text frame from a hostile client, through `chitty::server::websocket::parse` and
//! into the hub exactly as the gateway hands it over.
//!
//! Checks that the parser never panics and agrees with a plain JSON reading of the frame, that
//! the error it reports stays bounded by the frame it came from (it is echoed back), and that the
//! hub's response is precisely the one the protocol promises, for a room member and for a
//! direct-message-only user: who receives which frame, with which text, ids and Lamport time,
//! and whether the session survives. Every frame is decoded from its real wire form (JSON for
//! WebSocket users, protobuf for the gRPC observer), so the encoders are checked on arbitrary
//! text too.

use crate::frame::Frame;
use crate::peer::Peer;
use chitty::clock::MAX_PEER_TIMESTAMP;
use chitty::hub::outbox::Ending;
use chitty::hub::rules::check_text;
use chitty::hub::{Event, Flow, SessionError, Transport};
use chitty::server::websocket::{FrameError, Incoming, parse};
use serde_json::Value;

const ALICE: usize = 0;
const BOB: usize = 1;
const CAROL: usize = 2;

/// Runs one input; panics if an invariant breaks.
pub fn check(data: &[u8]) {
    // Text frames that are not UTF-8 never reach the parser: the WebSocket layer closes with 1007.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse(text);
    check_parse(text, &parsed);

    // alice: WebSocket, in the room; bob: gRPC, in the room; carol: WebSocket, direct only.
    let hub = crate::hub(16, 16);
    let mut peers = [
        crate::joined(&hub, Transport::WebSocket, "alice"),
        crate::joined(&hub, Transport::Grpc, "bob"),
        crate::direct_only(&hub, Transport::WebSocket),
    ];
    assert_eq!(
        peers.each_ref().map(|p| p.id),
        [Some(1), Some(2), Some(3)],
        "ids come from one sequence starting at 1"
    );
    for p in &mut peers {
        p.drain();
    }
    // The direct-only user first, so that the room member's frame may find it gone.
    for sender in [CAROL, ALICE] {
        let before = hub.clock().now();
        let expected = expect(&peers, sender, before, &parsed);
        let flow = feed(&mut peers[sender], text);
        for (i, p) in peers.iter_mut().enumerate() {
            let got = p.drain().to_vec();
            let want = &expected.frames[i];
            // One refusal's wording is not this check's business, only that it is one.
            if let (Some(g), Some(w)) = (got.first(), want.first())
                && w.text == NOT_IN_ROOM
            {
                assert!(g.text.contains("broadcast room"), "{g:?}");
                assert_eq!(
                    got,
                    [Frame {
                        text: g.text.clone(),
                        ..w.clone()
                    }]
                );
                continue;
            }
            assert_eq!(
                &got, want,
                "peer {i} after {text:?} from peer {sender} (parsed as {parsed:?})"
            );
        }
        let p = &mut peers[sender];
        match &expected.ending {
            Some(e) => {
                assert_eq!(flow, Flow::Ended);
                assert_eq!(p.ending.as_ref(), Some(&Ending::Error(e.clone())));
            }
            None => {
                assert_eq!(flow, Flow::Continue, "{text:?} ended the session");
                assert_eq!(p.ending, None);
            }
        }
        let connected: Vec<u64> = hub.users().iter().map(|u| u.id).collect();
        assert_eq!(
            connected.contains(&(sender as u64 + 1)),
            expected.ending.is_none()
        );
    }
}

/// The gateway's translation of a text frame into an event (`server::websocket::handle_text`).
fn feed(p: &mut Peer, text: &str) -> Flow {
    match parse(text) {
        Ok(m) => p.handle().handle(
            m.timestamp,
            Event::Message {
                username: "",
                text: &m.message,
                recipient: m.recipient_id,
            },
        ),
        Err(e) => p.handle().handle(
            0,
            Event::Invalid {
                reason: &e.reason,
                recipient: e.recipient,
            },
        ),
    }
}

/// What `parse` returns must agree with a generic JSON reading of the same frame.
fn check_parse(text: &str, parsed: &Result<Incoming, FrameError>) {
    let value = serde_json::from_str::<Value>(text);
    match parsed {
        Ok(m) => {
            // A generic reading can still fail where the typed one did not, on an ignored field
            // such as a number out of f64 range; there is nothing to compare against then.
            let Ok(v) = value else { return };
            let (recipient, message, timestamp) = match &v {
                Value::Object(obj) => (
                    obj.get("recipient_id"),
                    &obj["message"],
                    obj.get("timestamp"),
                ),
                _ => panic!("parse accepted {text:?}, which is not a JSON object"),
            };
            assert_eq!(message.as_str(), Some(&*m.message));
            let number = |n: Option<&Value>| n.map_or(Some(0), Value::as_u64);
            assert_eq!(number(recipient), Some(m.recipient_id));
            assert_eq!(number(timestamp), Some(m.timestamp));
        }
        Err(e) => {
            assert!(
                e.reason.starts_with("malformed JSON: ") || e.reason.starts_with("invalid frame: "),
                "{e:?}"
            );
            let named = value
                .ok()
                .and_then(|v| v.get("recipient_id").and_then(Value::as_u64));
            assert_eq!(e.recipient, named.unwrap_or(0), "{e:?}");
            // The reason is echoed in an error frame: it may quote the input (escaped), but must
            // not grow beyond a small multiple of it.
            assert!(
                e.reason.len() <= 256 + 12 * text.len(),
                "a {}-byte reason for a {}-byte frame",
                e.reason.len(),
                text.len()
            );
        }
    }
}

/// Marks the refusal of a broadcast from a user outside the room, whose wording is free.
const NOT_IN_ROOM: &str = "<not in the broadcast room>";

struct Expected {
    /// What each peer receives, by index.
    frames: [Vec<Frame>; 3],
    /// How the sender's session ends, if it does.
    ending: Option<SessionError>,
}

/// The protocol's answer to `parsed` from `sender` when the hub clock reads `before`.
fn expect(
    peers: &[Peer; 3],
    sender: usize,
    before: u64,
    parsed: &Result<Incoming, FrameError>,
) -> Expected {
    let mut out = Expected {
        frames: Default::default(),
        ending: None,
    };
    let in_room = sender == ALICE;
    let name = if in_room { "alice" } else { "" };
    let id = peers[sender].id.expect("sender has an id");
    let m = match parsed {
        Err(e) => {
            out.frames[sender].push(Frame::error(before + 1, e.recipient, &e.reason));
            return out;
        }
        Ok(m) => m,
    };
    if m.timestamp > MAX_PEER_TIMESTAMP {
        out.ending = Some(SessionError::TimestampOutOfRange(m.timestamp));
        if in_room {
            // Violations leave at the server's own next time (the offending stamp is refused).
            out.frames[BOB].push(Frame::leave(before + 1, "alice", id, 1));
        }
        return out;
    }
    let t = before.max(m.timestamp) + 1;
    let r = m.recipient_id;
    let refuse = |out: &mut Expected, why: &str| out.frames[sender].push(Frame::error(t, r, why));
    if let Err(e) = check_text(&m.message) {
        if r != 0 || in_room {
            refuse(&mut out, &e.to_string());
        } else {
            refuse(&mut out, NOT_IN_ROOM);
        }
        return out;
    }
    if r == 0 {
        if in_room {
            let f = Frame::message(t, name, id, &m.message);
            out.frames[ALICE].push(f.clone());
            out.frames[BOB].push(f);
        } else {
            refuse(&mut out, NOT_IN_ROOM);
        }
        return out;
    }
    let recipient = peers
        .iter()
        .position(|p| p.id == Some(r) && p.ending.is_none());
    match recipient {
        Some(to) => {
            let f = Frame::direct(t, name, id, r, &m.message);
            // The sender gets its copy with the same time, unless it wrote to itself.
            if to != sender {
                out.frames[sender].push(f.clone());
            }
            out.frames[to].push(f);
        }
        None => refuse(&mut out, &format!("user {r} is not connected")),
    }
    out
}
