//! What the hub delivers, decoded from either wire form into one shape, so that the checks can
//! compare what a gRPC participant and a WebSocket user received.

use chitty::hub::Transport;
use chitty::pb::{self, chat_message::Kind};
use prost::Message;
use serde_json::Value;

/// Timestamps beyond this are no longer exact JSON numbers in a JavaScript client.
const MAX_EXACT_JSON: u64 = 1 << 53;

/// One delivered frame, whatever its wire form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Lamport time assigned by the hub.
    pub timestamp: u64,
    /// What it is.
    pub kind: Kind,
    /// The sender's username, or `SERVER`; empty for direct-message-only senders.
    pub from: String,
    /// The participant the frame is about; 0 for none.
    pub sender_id: u64,
    /// The recipient of a direct message (or the one an error names); 0 for none.
    pub recipient_id: u64,
    /// Who joined or left, on join and leave notices.
    pub subject: String,
    /// The message, notice or error text.
    pub text: String,
    /// Room size after the event; only JOIN and LEAVE carry it on both wires, so it is 0 on the
    /// other kinds.
    pub participants: u32,
    /// Who a ROSTER lists: id, name and transport of each session; empty on other kinds.
    pub roster: Vec<(u64, String, String)>,
}

impl Frame {
    /// Whether every participant in the room receives this kind, the same frame for everyone.
    /// SHUTDOWN is the one kind that is also private: direct-message-only sessions, which are
    /// not in the room, get the very same frame at the same Lamport time.
    pub fn is_broadcast(&self) -> bool {
        matches!(
            self.kind,
            Kind::Message | Kind::Join | Kind::Leave | Kind::Notice | Kind::Shutdown
        )
    }
}

/// Decodes one frame the hub queued for a session of `transport`; panics if it is malformed.
pub fn decode(transport: Transport, bytes: &[u8]) -> Frame {
    let frame = match transport {
        Transport::Grpc => from_protobuf(bytes),
        Transport::WebSocket => from_json(bytes),
    };
    assert!(
        frame.timestamp > 0,
        "a frame without a timestamp: {frame:?}"
    );
    frame
}

fn from_protobuf(bytes: &[u8]) -> Frame {
    let m = pb::ChatMessage::decode(bytes).expect("the hub queued a malformed ChatMessage");
    let kind = Kind::try_from(m.kind).expect("the hub sent an unknown kind");
    Frame {
        timestamp: m.timestamp,
        kind,
        from: m.username,
        sender_id: m.sender_id,
        recipient_id: m.recipient_id,
        subject: m.subject,
        text: m.message,
        participants: if matches!(kind, Kind::Join | Kind::Leave) {
            m.participants
        } else {
            0
        },
        roster: m
            .roster
            .into_iter()
            .map(|p| (p.id, p.username, p.transport))
            .collect(),
    }
}

fn from_json(bytes: &[u8]) -> Frame {
    let v: Value = serde_json::from_slice(bytes).expect("the hub queued malformed JSON");
    let obj = v.as_object().expect("a JSON frame is an object");
    let kind = match obj["kind"].as_str() {
        Some("message") => Kind::Message,
        Some("join") => Kind::Join,
        Some("leave") => Kind::Leave,
        Some("notice") => Kind::Notice,
        Some("error") => Kind::Error,
        Some("direct") => Kind::Direct,
        Some("welcome") => Kind::Welcome,
        Some("shutdown") => Kind::Shutdown,
        Some("roster") => Kind::Roster,
        other => panic!("a JSON frame with kind {other:?}"),
    };
    let number = |key: &str| match obj.get(key) {
        None => 0,
        Some(n) => n
            .as_u64()
            .unwrap_or_else(|| panic!("{key} is not a u64 in {v}")),
    };
    let string = |key: &str| match obj.get(key) {
        None => String::new(),
        Some(s) => s
            .as_str()
            .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
            .to_owned(),
    };
    let timestamp = number("timestamp");
    assert!(
        timestamp < MAX_EXACT_JSON,
        "timestamp {timestamp} is not exact in JSON"
    );
    // The basic protocol's fields: `message` on everything but errors, `error` on errors.
    let (text, other) = if kind == Kind::Error {
        (string("error"), "message")
    } else {
        (string("message"), "error")
    };
    assert!(obj.get(other).is_none(), "{kind:?} frame carries {other}");
    // JOIN and LEAVE always say the room's size; WELCOME and ROSTER say it too.
    let sized = matches!(
        kind,
        Kind::Join | Kind::Leave | Kind::Welcome | Kind::Roster
    );
    assert!(
        sized || !obj.contains_key("participants"),
        "participants on the wrong kind: {v}"
    );
    assert!(
        !matches!(kind, Kind::Join | Kind::Leave) || obj.contains_key("participants"),
        "a {kind:?} without participants: {v}"
    );
    let sender_id = number("sender_id");
    if kind == Kind::Welcome {
        assert_eq!(number("user_id"), sender_id, "welcome names the wrong id");
    } else {
        assert!(obj.get("user_id").is_none(), "user_id outside a welcome");
    }
    Frame {
        timestamp,
        kind,
        from: string("username"),
        sender_id,
        recipient_id: number("recipient_id"),
        subject: string("subject"),
        text,
        participants: if matches!(kind, Kind::Join | Kind::Leave) {
            u32::try_from(number("participants")).expect("participants fits in u32")
        } else {
            0
        },
        roster: roster_of(obj.get("users")),
    }
}

/// The `users` of a JSON ROSTER as (id, name, transport).
fn roster_of(users: Option<&Value>) -> Vec<(u64, String, String)> {
    let Some(users) = users else {
        return Vec::new();
    };
    let users = users.as_array().expect("users is an array");
    users
        .iter()
        .map(|u| {
            let field = |k: &str| {
                u[k].as_str()
                    .unwrap_or_else(|| panic!("{k} is not a string in {u}"))
                    .to_owned()
            };
            let id = u["id"].as_u64().expect("a listed id is a u64");
            (id, field("username"), field("transport"))
        })
        .collect()
}

/// The frames the hub is expected to send, built the way a reader of the protocol would.
impl Frame {
    fn server(timestamp: u64, kind: Kind) -> Frame {
        Frame {
            timestamp,
            kind,
            from: chitty::hub::rules::SERVER_NAME.to_owned(),
            sender_id: 0,
            recipient_id: 0,
            subject: String::new(),
            text: String::new(),
            participants: 0,
            roster: Vec::new(),
        }
    }

    /// A broadcast chat message.
    pub fn message(timestamp: u64, from: &str, sender_id: u64, text: &str) -> Frame {
        Frame {
            from: from.to_owned(),
            sender_id,
            text: text.to_owned(),
            ..Frame::server(timestamp, Kind::Message)
        }
    }

    /// A direct message.
    pub fn direct(timestamp: u64, from: &str, sender_id: u64, to: u64, text: &str) -> Frame {
        Frame {
            recipient_id: to,
            ..Frame::message(timestamp, from, sender_id, text)
        }
        .with_kind(Kind::Direct)
    }

    /// A private SERVER notice refusing input.
    pub fn error(timestamp: u64, recipient_id: u64, why: &str) -> Frame {
        Frame {
            recipient_id,
            text: why.to_owned(),
            ..Frame::server(timestamp, Kind::Error)
        }
    }

    /// The notice that `name` (user `id`) joined; `participants` counts it.
    pub fn join(timestamp: u64, name: &str, id: u64, participants: u32) -> Frame {
        Frame {
            sender_id: id,
            subject: name.to_owned(),
            text: format!("Participant {name} joined Chitty-Chat at Lamport time {timestamp}"),
            participants,
            ..Frame::server(timestamp, Kind::Join)
        }
    }

    /// The notice that `name` (user `id`) left of its own accord or by disconnecting.
    pub fn leave(timestamp: u64, name: &str, id: u64, participants: u32) -> Frame {
        Frame {
            sender_id: id,
            subject: name.to_owned(),
            text: format!("Participant {name} left Chitty-Chat at Lamport time {timestamp}"),
            participants,
            ..Frame::server(timestamp, Kind::Leave)
        }
    }

    /// The server's last word to every session: the room's broadcast and the direct-only
    /// sessions' private copy are this same frame.
    pub fn shutdown(timestamp: u64, text: &str) -> Frame {
        Frame {
            text: text.to_owned(),
            ..Frame::server(timestamp, Kind::Shutdown)
        }
    }

    /// A session's first frame: its id, to itself.
    pub fn welcome(timestamp: u64, id: u64) -> Frame {
        Frame {
            sender_id: id,
            recipient_id: id,
            text: format!("Welcome to Chitty-Chat: you are user {id}"),
            ..Frame::server(timestamp, Kind::Welcome)
        }
    }

    /// The answer to a roster request: `listed` as (id, name, transport), in id order.
    pub fn roster(timestamp: u64, listed: &[(u64, &str, Transport)]) -> Frame {
        Frame {
            text: format!("{} online", listed.len()),
            roster: listed
                .iter()
                .map(|(id, name, t)| (*id, (*name).to_owned(), t.as_str().to_owned()))
                .collect(),
            ..Frame::server(timestamp, Kind::Roster)
        }
    }

    fn with_kind(self, kind: Kind) -> Frame {
        Frame { kind, ..self }
    }
}
